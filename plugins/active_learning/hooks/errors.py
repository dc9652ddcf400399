"""Reading botocore errors."""

from __future__ import annotations

from botocore.exceptions import ClientError


def error_code(err: ClientError) -> str:
    return err.response.get("Error", {}).get("Code", "")


def error_message(err: ClientError) -> str:
    return err.response.get("Error", {}).get("Message", str(err))


def is_not_found(err: ClientError) -> bool:
    """SageMaker answers a describe of an absent resource with ValidationException or ResourceNotFound."""
    if error_code(err) in ("ResourceNotFound", "ResourceNotFoundException"):
        return True
    message = error_message(err).lower()
    return error_code(err) == "ValidationException" and (
        "could not find" in message or "does not exist" in message or "not found" in message
    )

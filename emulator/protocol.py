"""AWS wire-protocol helpers: JSON and REST-JSON responses and errors that botocore parses."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

from werkzeug.wrappers import Response

A2I_NAME = re.compile(r"^[a-z0-9](-*[a-z0-9])*$")
SAGEMAKER_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
ACCOUNT_ID = "123456789012"  # moto's default account: ARNs agree with what moto answers


class AwsError(Exception):
    """An error answered the way AWS answers it: a code, a message and an HTTP status."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status

    def response(self) -> Response:
        body = {"__type": self.code, "message": self.message, "Message": self.message}
        return Response(
            json.dumps(body),
            status=self.status,
            content_type="application/x-amz-json-1.1",
            headers={"x-amzn-ErrorType": self.code},
        )


def now() -> datetime:
    return datetime.now(UTC)


def epoch(moment: datetime) -> float:
    """Timestamps of the SageMaker JSON protocol: epoch seconds."""
    return moment.timestamp()


def iso(moment: datetime) -> str:
    """Timestamps of the A2I runtime (REST-JSON, iso8601)."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def json_response(
    body: dict[str, Any], status: int = 200, content_type: str = "application/x-amz-json-1.1"
) -> Response:
    return Response(json.dumps(body, default=str), status=status, content_type=content_type)


def check_name(name: Any, kind: str, pattern: re.Pattern[str] = A2I_NAME) -> str:
    if not isinstance(name, str) or not 1 <= len(name) <= 63 or not pattern.match(name):
        raise AwsError(
            "ValidationException",
            f"1 validation error detected: Value '{name}' at '{kind}' failed to satisfy constraint: "
            f"Member must satisfy regular expression pattern: {pattern.pattern}",
        )
    return name


def require(body: dict[str, Any], *names: str) -> None:
    for name in names:
        if body.get(name) in (None, ""):
            raise AwsError(
                "ValidationException",
                f"1 validation error detected: Value null at '{name}' "
                "failed to satisfy constraint: Member must not be null",
            )


def arn(region: str, resource: str, name: str) -> str:
    return f"arn:aws:sagemaker:{region}:{ACCOUNT_ID}:{resource}/{name}"


def credential_scope(authorization: str, default_region: str = "us-east-1") -> tuple[str, str]:
    """``(region, signing service)`` from a SigV4 Authorization header's credential scope."""
    match = re.search(r"Credential=[^/]+/\d{8}/([a-z0-9-]+)/([a-z0-9-]+)/", authorization or "")
    return (match.group(1), match.group(2)) if match else (default_region, "")

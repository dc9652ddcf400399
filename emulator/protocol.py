"""AWS wire-protocol helpers: JSON and REST-JSON responses and errors that botocore parses."""

from __future__ import annotations

import functools
import json
import re
from datetime import UTC, datetime
from typing import Any

import botocore.session
from botocore.model import Shape
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


@functools.cache
def _sagemaker_model() -> Any:
    return botocore.session.get_session().get_service_model("sagemaker")


def _without_empty_structures(value: Any, shape: Shape) -> Any:
    if shape.type_name == "structure" and isinstance(value, dict):
        required = set(shape.required_members)
        return {
            name: _without_empty_structures(member, shape.members[name])
            for name, member in value.items()
            if name not in shape.members
            or name in required
            or not (
                member == {}
                and shape.members[name].type_name == "structure"
                and shape.members[name].required_members
            )
        }
    if shape.type_name == "list" and isinstance(value, list):
        return [_without_empty_structures(item, shape.member) for item in value]
    if shape.type_name == "map" and isinstance(value, dict):
        return {key: _without_empty_structures(item, shape.value) for key, item in value.items()}
    return value


def conform_sagemaker_response(operation: str, response: Response) -> Response:
    """A SageMaker JSON answer of moto as AWS gives it: absent optional structures omitted.

    moto answers what was never configured as an empty structure (``DataCaptureConfig: {}``,
    ``VpcConfig: {}``); AWS omits it, and botocore's model cannot hold it (the structures have
    required members), so clients that read such a member would see a shape AWS never returns.
    """
    if response.status_code != 200 or operation not in _sagemaker_model().operation_names:
        return response
    shape = _sagemaker_model().operation_model(operation).output_shape
    if shape is None:
        return response
    body = json.loads(response.get_data() or b"{}")
    response.set_data(json.dumps(_without_empty_structures(body, shape)))
    return response

"""AWS calls checked against botocore's models and an IAM policy; a recorder of the calls. Domain-free.

- ``output_errors``: a parsed response checked against its operation's output shape (required
  members, types, min/max of numbers, lengths and sizes, enums, patterns), by extending botocore's
  own input validator (``botocore.validate.ParamValidator``), which checks only types, required
  members and minimums.
- ``CallRecorder``: botocore event handlers on a client that record each call (service, operation,
  parameters, signing access key, HTTP status, the contract errors of its response). As a botocore
  client plugin (``plugin_environment``) it records the calls of every client of every process
  started with that environment, appending JSON lines to one file.
- ``required_permissions`` and ``Policy``: the IAM actions and resource ARNs a recorded call needs,
  and a small evaluator of a policy's Allow statements (``fnmatch`` patterns, ``StringEquals``).
"""

from __future__ import annotations

import copy
import fnmatch
import functools
import json
import os
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from botocore.model import OperationModel, Shape
from botocore.validate import ParamValidator, ValidationErrors

CALL_LOG_ENV = "AWS_CONTRACT_CALL_LOG"
PLUGIN_ENV = "BOTOCORE_EXPERIMENTAL__PLUGINS"  # botocore imports these modules for every new client
_CONTEXT_KEY = "aws_contract"
_CREDENTIAL = re.compile(r"Credential=([^/]+)/")


# Output shapes ------------------------------------------------------------------------------------
class _OutputErrors(ValidationErrors):
    def _format_error(self, error: tuple[str, str, dict[str, Any]]) -> str:
        error_type, name, details = error
        where = self._get_name(name) if name else "output"
        if error_type == "above maximum":
            return f"{where}: {details['param']!r} is above the maximum {details['max_allowed']}"
        if error_type == "not in enum":
            return f"{where}: {details['param']!r} is not one of {details['allowed']}"
        if error_type == "pattern mismatch":
            return f"{where}: {details['param']!r} does not match {details['pattern']!r}"
        return super()._format_error(error).replace("parameter", "member").replace(" input", " output")


@functools.cache
def _pattern(pattern: str) -> re.Pattern[str] | None:
    """Python's ``re`` reads most of the models' (Java) patterns; the rest (``\\p{L}``...) go unchecked."""
    try:
        return re.compile(pattern)
    except re.error:
        return None


class OutputValidator(ParamValidator):
    """botocore's validator, plus what an output must also respect: maximums, enums and patterns."""

    VALIDATED_METADATA_ATTRS = ParamValidator.VALIDATED_METADATA_ATTRS | {"max", "enum", "pattern"}

    def validate(self, params: Any, shape: Shape) -> _OutputErrors:
        errors = _OutputErrors()
        self._validate(params, shape, errors, name="")
        return errors

    def _check_max(self, name: str, value: float, shape: Shape, errors: ValidationErrors) -> None:
        if "max" in shape.metadata and value > shape.metadata["max"]:
            errors.report(name, "above maximum", param=value, max_allowed=shape.metadata["max"])

    def _validate_string(self, param: Any, shape: Shape, errors: ValidationErrors, name: str) -> None:
        super()._validate_string(param, shape, errors, name)
        if not isinstance(param, str):
            return
        self._check_max(name, len(param), shape, errors)
        enum = shape.metadata.get("enum")
        if enum and param not in enum:
            errors.report(name, "not in enum", param=param, allowed=enum)
        pattern = _pattern(shape.metadata["pattern"]) if "pattern" in shape.metadata else None
        if pattern is not None and pattern.search(param) is None:  # AWS patterns are not anchored
            errors.report(name, "pattern mismatch", param=param, pattern=pattern.pattern)

    def _validate_list(self, param: Any, shape: Shape, errors: ValidationErrors, name: str) -> None:
        super()._validate_list(param, shape, errors, name)
        if isinstance(param, list | tuple):
            self._check_max(name, len(param), shape, errors)

    def _validate_map(self, param: Any, shape: Shape, errors: ValidationErrors, name: str) -> None:
        super()._validate_map(param, shape, errors, name)
        if isinstance(param, dict):
            self._check_max(name, len(param), shape, errors)

    def _validate_integer(self, param: Any, shape: Shape, errors: ValidationErrors, name: str) -> None:
        super()._validate_integer(param, shape, errors, name)
        if isinstance(param, int):
            self._check_max(name, param, shape, errors)

    _validate_long = _validate_integer

    def _validate_double(self, param: Any, shape: Shape, errors: ValidationErrors, name: str) -> None:
        super()._validate_double(param, shape, errors, name)
        if isinstance(param, int | float):
            self._check_max(name, param, shape, errors)

    _validate_float = _validate_double


def output_errors(parsed: Mapping[str, Any], operation: OperationModel) -> list[str]:
    """What in a successful parsed response breaks its operation's output shape ([] when nothing).

    :param parsed: the response as botocore parsed it (``ResponseMetadata`` is botocore's own).
    :param operation: the operation's model (``client.meta.service_model.operation_model(name)``).
    """
    shape = operation.output_shape
    body = {key: value for key, value in parsed.items() if key != "ResponseMetadata"}
    if shape is None:
        return [f"output: {sorted(body)} returned by an operation with no output"] if body else []
    report = OutputValidator().validate(body, shape)
    return report.generate_report().splitlines() if report.has_errors() else []


# Recording ----------------------------------------------------------------------------------------
def _json_safe(value: Any) -> Any:
    """Parameters as JSON: payloads (bytes, files) become a placeholder, datetimes their ISO form."""
    if isinstance(value, Mapping):
        return {str(key): _json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(item) for item in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return f"<{type(value).__name__}>"


@dataclass
class CallRecorder:
    """Records every call of the clients it is attached to, with its response's contract errors.

    :param path: append each call as a JSON line to this file (several processes may share it);
        without it, calls are kept in ``calls``.
    """

    path: Path | None = None
    calls: list[dict[str, Any]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def attach(self, client: Any) -> Any:
        events = client.meta.events
        events.register("before-parameter-build", self._parameters)
        # runs after the signer (less specific events run later): the Authorization header is set
        events.register("request-created", self._signed)
        events.register("after-call", functools.partial(self._after_call, client))
        return client

    @staticmethod
    def _parameters(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context[_CONTEXT_KEY] = {"params": _json_safe(copy.copy(params))}

    @staticmethod
    def _signed(request: Any, **_: Any) -> None:
        authorization = request.headers.get("Authorization") or ""
        if isinstance(authorization, bytes):
            authorization = authorization.decode("utf-8", "replace")
        match = _CREDENTIAL.search(authorization)
        state = getattr(request, "context", {}).get(_CONTEXT_KEY)
        if state is not None:
            state["access_key"] = match.group(1) if match else None

    def _after_call(
        self,
        client: Any,
        http_response: Any,
        parsed: dict[str, Any],
        model: OperationModel,
        context: dict[str, Any],
        **_: Any,
    ) -> None:
        state = context.get(_CONTEXT_KEY, {})
        status = getattr(http_response, "status_code", None) or parsed.get("ResponseMetadata", {}).get(
            "HTTPStatusCode"
        )
        service = client.meta.service_model
        call = {
            "service": service.service_name,
            "signing_name": service.signing_name,
            "operation": model.name,
            "region": client.meta.region_name,
            "access_key": state.get("access_key"),
            "params": state.get("params", {}),
            "status": status,
            "error": parsed.get("Error", {}).get("Code"),
            "contract_errors": [] if "Error" in parsed else _checked(parsed, model),
            "pid": os.getpid(),
        }
        with self._lock:
            if self.path is None:
                self.calls.append(call)
            else:
                with self.path.open("a") as log:
                    log.write(json.dumps(call) + "\n")


def _checked(parsed: Mapping[str, Any], model: OperationModel) -> list[str]:
    """The response's contract errors; a failure of the check itself is one, never the caller's error."""
    try:
        return output_errors(parsed, model)
    except Exception as err:  # the recorder runs inside the product: report, do not break the call
        return [f"the output check failed: {err!r}"]


@functools.cache
def _plugin_recorder(path: str) -> CallRecorder:
    return CallRecorder(Path(path))


def initialize_client_plugin(client: Any) -> None:
    """botocore's client plugin hook: record this client's calls to the file named by CALL_LOG_ENV."""
    path = os.environ.get(CALL_LOG_ENV)
    if path:
        _plugin_recorder(path).attach(client)


def plugin_environment(call_log: Path) -> dict[str, str]:
    """Environment variables that make every botocore client of a process record into ``call_log``."""
    return {PLUGIN_ENV: f"aws_contract={__name__}", CALL_LOG_ENV: str(call_log)}


def read_calls(call_log: Path) -> list[dict[str, Any]]:
    if not call_log.exists():
        return []
    return [json.loads(line) for line in call_log.read_text().splitlines() if line.strip()]


# IAM ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Permission:
    """One authorization a call needs: an action on a resource, with the request's condition keys."""

    action: str
    resource: str
    conditions: tuple[tuple[str, str], ...] = ()


# S3 operations are authorized by actions of other names, on the bucket or on the object.
_S3_ACTIONS = {
    "ListObjectsV2": ("s3:ListBucket", "bucket"),
    "ListObjects": ("s3:ListBucket", "bucket"),
    "HeadBucket": ("s3:ListBucket", "bucket"),
    "GetBucketLocation": ("s3:GetBucketLocation", "bucket"),
    "GetObject": ("s3:GetObject", "object"),
    "HeadObject": ("s3:GetObject", "object"),
    "PutObject": ("s3:PutObject", "object"),
    "CreateMultipartUpload": ("s3:PutObject", "object"),
    "UploadPart": ("s3:PutObject", "object"),
    "CompleteMultipartUpload": ("s3:PutObject", "object"),
    "AbortMultipartUpload": ("s3:AbortMultipartUpload", "object"),
    "DeleteObject": ("s3:DeleteObject", "object"),
}

# SageMaker (and A2I runtime, same "sagemaker" prefix) resources: the parameter naming the resource
# and the ARN's resource type; operations that act on two resources need both.
_SAGEMAKER_RESOURCES: dict[str, tuple[tuple[str, str], ...]] = {
    "CreateModel": (("ModelName", "model"),),
    "DescribeModel": (("ModelName", "model"),),
    "DeleteModel": (("ModelName", "model"),),
    "CreateEndpointConfig": (("EndpointConfigName", "endpoint-config"),),
    "DescribeEndpointConfig": (("EndpointConfigName", "endpoint-config"),),
    "DeleteEndpointConfig": (("EndpointConfigName", "endpoint-config"),),
    "CreateEndpoint": (("EndpointName", "endpoint"), ("EndpointConfigName", "endpoint-config")),
    "UpdateEndpoint": (("EndpointName", "endpoint"), ("EndpointConfigName", "endpoint-config")),
    "DescribeEndpoint": (("EndpointName", "endpoint"),),
    "DeleteEndpoint": (("EndpointName", "endpoint"),),
    "InvokeEndpoint": (("EndpointName", "endpoint"),),
    "CreateTrainingJob": (("TrainingJobName", "training-job"),),
    "DescribeTrainingJob": (("TrainingJobName", "training-job"),),
    "StopTrainingJob": (("TrainingJobName", "training-job"),),
    "CreateTransformJob": (("TransformJobName", "transform-job"),),
    "DescribeTransformJob": (("TransformJobName", "transform-job"),),
    "CreateHumanTaskUi": (("HumanTaskUiName", "human-task-ui"),),
    "DescribeHumanTaskUi": (("HumanTaskUiName", "human-task-ui"),),
    "CreateFlowDefinition": (("FlowDefinitionName", "flow-definition"),),
    "DescribeFlowDefinition": (("FlowDefinitionName", "flow-definition"),),
    "DeleteFlowDefinition": (("FlowDefinitionName", "flow-definition"),),
    "StartHumanLoop": (("FlowDefinitionArn", "arn"),),
    "DescribeHumanLoop": (("HumanLoopName", "human-loop"),),
    "StopHumanLoop": (("HumanLoopName", "human-loop"),),
    "DeleteHumanLoop": (("HumanLoopName", "human-loop"),),
    "AddTags": (("ResourceArn", "arn"),),
    "ListTags": (("ResourceArn", "arn"),),
    "DeleteTags": (("ResourceArn", "arn"),),
}
# Parameters that hand a role to SageMaker: the caller needs iam:PassRole on it.
_PASSED_ROLES = {
    "CreateModel": "ExecutionRoleArn",
    "CreateTrainingJob": "RoleArn",
    "CreateFlowDefinition": "RoleArn",
}
_PASSED_TO_SERVICE = "sagemaker.amazonaws.com"


def required_permissions(call: Mapping[str, Any], account: str) -> list[Permission]:
    """The IAM permissions a recorded call needs (``List*`` operations: resource ``*``).

    :param call: a call as ``CallRecorder`` records it.
    :param account: the account the resources belong to.
    :raises KeyError: an operation this mapping does not know (add it rather than guess).
    """
    operation, params, region = call["operation"], call["params"], call["region"]
    if call["signing_name"] == "s3":
        action, level = _S3_ACTIONS[operation]
        if level == "bucket":  # the listed prefix is the s3:prefix condition key
            return [_list_bucket(params["Bucket"], params.get("Prefix", ""))]
        return [Permission(action, f"arn:aws:s3:::{params['Bucket']}/{params['Key']}")]
    if call["signing_name"] != "sagemaker":
        raise KeyError(f"{call['service']}:{operation}")
    action = f"sagemaker:{operation}"
    if operation.startswith("List") and operation != "ListTags":
        return [Permission(action, "*")]
    permissions = []
    for parameter, kind in _SAGEMAKER_RESOURCES[operation]:
        value = params[parameter]
        # SageMaker ARNs carry names in lower case
        arn = value if kind == "arn" else f"arn:aws:sagemaker:{region}:{account}:{kind}/{value.lower()}"
        permissions.append(Permission(action, arn))
        if operation.startswith("Create") and params.get("Tags"):  # tagging on create needs AddTags too
            permissions.append(Permission("sagemaker:AddTags", arn))
    if operation in _PASSED_ROLES:
        role = params[_PASSED_ROLES[operation]]
        permissions.append(Permission("iam:PassRole", role, (("iam:PassedToService", _PASSED_TO_SERVICE),)))
    return permissions


def _list_bucket(bucket: str, prefix: str) -> Permission:
    return Permission("s3:ListBucket", f"arn:aws:s3:::{bucket}", (("s3:prefix", prefix),))


def _s3_object(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def _image_pull(image: str) -> list[Permission]:
    """``<account>.dkr.ecr.<region>.amazonaws.com/<repository>:<tag>`` -> pulling it."""
    registry, _, repository = image.partition("/")
    account, _, rest = registry.partition(".dkr.ecr.")
    region = rest.split(".", 1)[0]
    arn = f"arn:aws:ecr:{region}:{account}:repository/{repository.split(':', 1)[0].split('@', 1)[0]}"
    return [Permission("ecr:BatchGetImage", arn), Permission("ecr:GetDownloadUrlForLayer", arn)]


def delegated_permissions(call: Mapping[str, Any]) -> list[Permission]:
    """What the role a call passes to SageMaker needs for that call's S3 locations and images.

    Training channels (read; an ``S3Prefix`` channel is listed too), the training output path,
    model artifacts, the flow definition's output path (written), and the algorithm image (pulled).
    The objects a manifest names are not seen here (they are inside the manifest).
    """
    params, permissions = call["params"], []
    if call["operation"] == "CreateTrainingJob":
        for channel in params.get("InputDataConfig", []):
            source = channel["DataSource"]["S3DataSource"]
            bucket, key = _s3_object(source["S3Uri"])
            if source["S3DataType"] == "S3Prefix":
                permissions.append(_list_bucket(bucket, key))
            permissions.append(Permission("s3:GetObject", f"arn:aws:s3:::{bucket}/{key}"))
        bucket, key = _s3_object(params["OutputDataConfig"]["S3OutputPath"])
        artifact = f"{key.rstrip('/')}/{params['TrainingJobName']}/output/model.tar.gz"
        permissions.append(Permission("s3:PutObject", f"arn:aws:s3:::{bucket}/{artifact}"))
        permissions += _image_pull(params["AlgorithmSpecification"]["TrainingImage"])
    elif call["operation"] == "CreateModel":
        for container in [params.get("PrimaryContainer"), *params.get("Containers", [])]:
            if container:
                if container.get("ModelDataUrl"):
                    bucket, key = _s3_object(container["ModelDataUrl"])
                    permissions.append(Permission("s3:GetObject", f"arn:aws:s3:::{bucket}/{key}"))
                permissions += _image_pull(container["Image"])
    elif call["operation"] == "CreateFlowDefinition":
        bucket, key = _s3_object(params["OutputConfig"]["S3OutputPath"])
        output = f"{key.rstrip('/')}/{params['FlowDefinitionName']}/output.json"
        permissions.append(Permission("s3:PutObject", f"arn:aws:s3:::{bucket}/{output}"))
    return permissions


def _as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


@dataclass(frozen=True)
class Policy:
    """An IAM policy document's Allow statements, placeholders ``${Name}`` substituted.

    Evaluates what this package's policies use: ``Action`` and ``Resource`` with ``*``/``?``
    wildcards (case-insensitive actions, case-sensitive ARNs) and ``StringEquals``/``StringLike``
    conditions. Anything else in a statement (``NotAction``, ``Deny``, other operators) is refused,
    so the evaluator never silently allows what it does not understand.
    """

    statements: tuple[Mapping[str, Any], ...]

    @classmethod
    def load(cls, path: Path, placeholders: Mapping[str, str]) -> Policy:
        text = path.read_text()
        for name, value in placeholders.items():
            text = text.replace("${" + name + "}", value)
        left = sorted(set(re.findall(r"\$\{[A-Za-z]+\}", text)))
        if left:
            raise ValueError(f"{path}: placeholders without a value: {left}")
        statements = json.loads(text)["Statement"]
        for statement in statements:
            unknown = set(statement) - {"Sid", "Effect", "Action", "Resource", "Condition"}
            if statement.get("Effect") != "Allow" or unknown:
                raise ValueError(f"{path}: statement {statement.get('Sid')} uses what this evaluator lacks")
            for operator in statement.get("Condition", {}):
                if operator not in ("StringEquals", "StringLike"):
                    raise ValueError(f"{path}: condition operator {operator} is not evaluated here")
        return cls(tuple(statements))

    def allows(self, permission: Permission) -> bool:
        return any(self._matches(statement, permission) for statement in self.statements)

    @staticmethod
    def _matches(statement: Mapping[str, Any], permission: Permission) -> bool:
        if not any(
            fnmatch.fnmatchcase(permission.action.lower(), pattern.lower())
            for pattern in _as_list(statement["Action"])
        ):
            return False
        if not any(fnmatch.fnmatchcase(permission.resource, p) for p in _as_list(statement["Resource"])):
            return False
        context = dict(permission.conditions)
        for operator, tests in statement.get("Condition", {}).items():
            for key, expected in tests.items():
                if key not in context:
                    return False
                match = (
                    (lambda value, pattern: value == pattern)
                    if operator == "StringEquals"
                    else fnmatch.fnmatchcase
                )
                if not any(match(context[key], pattern) for pattern in _as_list(expected)):
                    return False
        return True

    def denied(self, permissions: Iterable[Permission]) -> list[Permission]:
        return sorted({p for p in permissions if not self.allows(p)}, key=lambda p: (p.action, p.resource))

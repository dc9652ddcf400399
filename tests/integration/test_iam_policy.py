"""The shipped IAM policies (include/iam/) allow every AWS call of a day of the DAG, and nothing outside it.

The day is the end-to-end run (``end_to_end_day``): every botocore call of the Airflow tasks is
recorded with the access key that signed it; the Airflow connection's calls are checked against
airflow-policy.json, and what they hand to SageMaker with the execution role (training channels,
outputs, model artifacts, the algorithm image) against sagemaker-execution-role-policy.json.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import pytest

from active_learning.hooks.models import builtin_image_uri
from active_learning.settings import LoopSettings
from emulator.protocol import ACCOUNT_ID
from tests.aws_contract import _S3_ACTIONS, Permission, Policy, delegated_permissions, required_permissions
from tests.integration.conftest import ROOT, EndToEndDay
from tools.airflow_runs import ENDPOINT, airflow_env
from tools.seed import BUCKET, INITIAL_MODEL, PREFIX, VALIDATION_MANIFEST

POLICIES = ROOT / "include" / "iam"
AIRFLOW_POLICY = POLICIES / "airflow-policy.json"
EXECUTION_ROLE_POLICY = POLICIES / "sagemaker-execution-role-policy.json"
DEMO_ENV = airflow_env(Path("unused"), "http://127.0.0.1")
PRODUCT_ACCESS_KEY = DEMO_ENV["AWS_ACCESS_KEY_ID"]  # the demo's Airflow connection signs with it
REGION = "us-east-1"
PLACEHOLDERS = {
    "Bucket": BUCKET,
    "Prefix": PREFIX,
    "ResourcePrefix": {f.name: f.default for f in dataclasses.fields(LoopSettings)}["resource_prefix"],
    "EndpointName": ENDPOINT,
    "Region": REGION,
    "Account": ACCOUNT_ID,
    "RoleArn": DEMO_ENV["AL_ROLE_ARN"],
    # the account of the region's built-in algorithm image (emulator.protocol answers it as AWS does)
    "AlgorithmAccount": builtin_image_uri(REGION).split(".", 1)[0],
}


def s3_arn(uri: str) -> str:
    return "arn:aws:s3:::" + uri.removeprefix("s3://")


def product_calls(day: EndToEndDay) -> list[dict[str, Any]]:
    assert day.returncode == 0, day.stdout[-3000:] + day.airflow_log[-3000:]
    calls = [call for call in day.calls if call["access_key"] == PRODUCT_ACCESS_KEY]
    operations = {call["operation"] for call in calls}
    # the recording reached the Airflow tasks: the day's essential calls are there
    assert {"ListObjectsV2", "PutObject", "InvokeEndpoint", "StartHumanLoop", "ListHumanLoops"} <= operations
    assert {"CreateTrainingJob", "CreateModel", "CreateEndpointConfig", "UpdateEndpoint"} <= operations
    return calls


def test_the_airflow_policy_allows_every_call_of_the_day(end_to_end_day: EndToEndDay) -> None:
    permissions = [
        p for call in product_calls(end_to_end_day) for p in required_permissions(call, ACCOUNT_ID)
    ]
    assert any(p.action == "iam:PassRole" for p in permissions)
    denied = Policy.load(AIRFLOW_POLICY, PLACEHOLDERS).denied(permissions)
    assert not denied, "\n".join(f"{p.action} on {p.resource} {p.conditions}" for p in denied)


def test_the_execution_role_policy_allows_what_sagemaker_does_with_the_role(
    end_to_end_day: EndToEndDay,
) -> None:
    permissions = [p for call in product_calls(end_to_end_day) for p in delegated_permissions(call)]
    assert {p.action for p in permissions} >= {"s3:GetObject", "s3:PutObject", "ecr:BatchGetImage"}
    policy = Policy.load(EXECUTION_ROLE_POLICY, PLACEHOLDERS)
    # the demo keeps its initial model and validation set outside the prefix; as the README says,
    # such locations are added to the role's policy
    outside = [INITIAL_MODEL, VALIDATION_MANIFEST]
    assert {p.resource for p in policy.denied(permissions)} == {s3_arn(uri) for uri in outside} | {
        f"arn:aws:s3:::{BUCKET}"  # the model channel (S3Prefix) lists its location
    }
    extended = Policy(
        (
            *policy.statements,
            {"Effect": "Allow", "Action": "s3:GetObject", "Resource": [s3_arn(uri) for uri in outside]},
            {
                "Effect": "Allow",
                "Action": "s3:ListBucket",
                "Resource": f"arn:aws:s3:::{BUCKET}",
                "Condition": {"StringLike": {"s3:prefix": INITIAL_MODEL.split("/", 3)[3]}},
            },
        )
    )
    assert extended.denied(permissions) == []


# The policies and the checker themselves ---------------------------------------------------------------
@pytest.fixture(scope="module")
def airflow_policy() -> Policy:
    return Policy.load(AIRFLOW_POLICY, PLACEHOLDERS)


def call(service: str, operation: str, signing_name: str | None = None, **params: Any) -> dict[str, Any]:
    return {
        "service": service,
        "signing_name": signing_name or service,
        "operation": operation,
        "region": REGION,
        "params": params,
    }


def sagemaker_arn(kind: str, name: str) -> str:
    return f"arn:aws:sagemaker:{REGION}:{ACCOUNT_ID}:{kind}/{name}"


@pytest.mark.parametrize(
    "permission",
    [
        Permission("s3:GetObject", f"arn:aws:s3:::another-bucket/{PREFIX}/runs/x.jsonl"),
        Permission("s3:GetObject", f"arn:aws:s3:::{BUCKET}/other-prefix/x.jsonl"),
        Permission("s3:PutObject", f"arn:aws:s3:::{BUCKET}/x.jsonl"),
        # Airflow writes runs/ and training/ only: not the day's inputs, nor the reviewers' outputs
        Permission("s3:PutObject", f"arn:aws:s3:::{BUCKET}/{PREFIX}/incoming/2026-11-26/a.jpg"),
        Permission("s3:PutObject", f"arn:aws:s3:::{BUCKET}/{PREFIX}/a2i-output/fd/2026/11/26/output.json"),
        Permission("s3:PutObject", f"arn:aws:s3:::{BUCKET}/{PREFIX}/validation/v.manifest"),
        Permission("sagemaker:StopTrainingJob", sagemaker_arn("training-job", "active-learning-20261126-x")),
        Permission("s3:DeleteObject", f"arn:aws:s3:::{BUCKET}/{PREFIX}/runs/x.jsonl"),
        Permission("s3:ListBucket", f"arn:aws:s3:::{BUCKET}", (("s3:prefix", "other/"),)),
        Permission("s3:ListBucket", f"arn:aws:s3:::{BUCKET}"),  # no prefix: the whole bucket
        Permission("sagemaker:CreateModel", sagemaker_arn("model", "someone-elses-model")),
        Permission("sagemaker:DeleteEndpoint", sagemaker_arn("endpoint", ENDPOINT)),
        Permission("sagemaker:UpdateEndpoint", sagemaker_arn("endpoint", "another-endpoint")),
        Permission("sagemaker:StartHumanLoop", sagemaker_arn("flow-definition", "other-fd")),
        Permission(
            "sagemaker:DescribeModel", f"arn:aws:sagemaker:eu-west-1:{ACCOUNT_ID}:model/active-learning-m"
        ),
        Permission("iam:PassRole", PLACEHOLDERS["RoleArn"], (("iam:PassedToService", "ec2.amazonaws.com"),)),
        Permission("iam:PassRole", PLACEHOLDERS["RoleArn"]),
        Permission(
            "iam:PassRole",
            f"arn:aws:iam::{ACCOUNT_ID}:role/Admin",
            (("iam:PassedToService", "sagemaker.amazonaws.com"),),
        ),
    ],
    ids=lambda permission: f"{permission.action} {permission.resource.rsplit(':', 1)[-1]}",
)
def test_the_airflow_policy_denies_outside_the_loops_scope(
    airflow_policy: Policy, permission: Permission
) -> None:
    assert not airflow_policy.allows(permission)


def test_the_checker_maps_operations_to_iam_actions_and_resources(airflow_policy: Policy) -> None:
    listing = call("s3", "ListObjectsV2", Bucket=BUCKET, Prefix=f"{PREFIX}/runs/")
    assert required_permissions(listing, ACCOUNT_ID) == [
        Permission("s3:ListBucket", f"arn:aws:s3:::{BUCKET}", (("s3:prefix", f"{PREFIX}/runs/"),))
    ]
    head = call("s3", "HeadObject", Bucket="elsewhere", Key="x.jpg")
    assert required_permissions(head, ACCOUNT_ID) == [
        Permission("s3:GetObject", "arn:aws:s3:::elsewhere/x.jpg")
    ]
    assert airflow_policy.denied(required_permissions(head, ACCOUNT_ID))
    flow = sagemaker_arn("flow-definition", "active-learning-fd-1")
    start = call(
        "sagemaker-a2i-runtime", "StartHumanLoop", "sagemaker", HumanLoopName="x", FlowDefinitionArn=flow
    )
    assert required_permissions(start, ACCOUNT_ID) == [Permission("sagemaker:StartHumanLoop", flow)]
    create = call(
        "sagemaker",
        "CreateModel",
        ModelName="Active-Learning-Model-1",
        ExecutionRoleArn=PLACEHOLDERS["RoleArn"],
        Tags=[{"Key": "k", "Value": "v"}],
    )
    model = sagemaker_arn("model", "active-learning-model-1")  # SageMaker ARNs carry lower-case names
    assert required_permissions(create, ACCOUNT_ID) == [
        Permission("sagemaker:CreateModel", model),
        Permission("sagemaker:AddTags", model),
        Permission(
            "iam:PassRole", PLACEHOLDERS["RoleArn"], (("iam:PassedToService", "sagemaker.amazonaws.com"),)
        ),
    ]
    with pytest.raises(KeyError):
        required_permissions(call("s3", "DeleteBucket", Bucket=BUCKET), ACCOUNT_ID)


def test_a_policy_with_a_placeholder_left_or_an_unknown_construct_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"\$\{Bucket\}"):
        Policy.load(AIRFLOW_POLICY, {k: v for k, v in PLACEHOLDERS.items() if k != "Bucket"})
    deny = tmp_path / "deny.json"
    deny.write_text('{"Statement": [{"Effect": "Deny", "Action": "s3:*", "Resource": "*"}]}')
    with pytest.raises(ValueError, match="lacks"):
        Policy.load(deny, {})


def test_the_policies_grant_no_wildcard_actions_and_the_docs_explain_every_placeholder() -> None:
    readme = (ROOT / "docs" / "real-aws.md").read_text()
    for path in (AIRFLOW_POLICY, EXECUTION_ROLE_POLICY):
        text = path.read_text()
        assert not re.search(r'"[a-z0-9]+:\*"', text), path
        for placeholder in set(re.findall(r"\$\{[A-Za-z]+\}", text)):
            assert f"`{placeholder}`" in readme, (
                f"{placeholder} of {path.name} is not explained in docs/real-aws.md"
            )


# Calls the product's code makes under other names than their operations': the provider's hook
# methods and the waiters (by what they call).
INDIRECT_CALLS = {
    "load_file": ("s3", "PutObject"),
    "load_string": ("s3", "PutObject"),
    "generate_presigned_url": ("s3", "GetObject"),  # Label Studio reads the image with Airflow's key
    "endpoint_in_service": ("sagemaker", "DescribeEndpoint"),
    "training_job_completed_or_stopped": ("sagemaker", "DescribeTrainingJob"),
    "transform_job_completed_or_stopped": ("sagemaker", "DescribeTransformJob"),
    "FlowDefinitionActive": ("sagemaker", "DescribeFlowDefinition"),
}
# Actions a call needs besides its own: tags given on create, the role handed to SageMaker, and
# the abort of a failed multipart upload (boto3's upload_file, under S3Hook.load_file).
IMPLIED_ACTIONS = {
    ("s3", "PutObject"): {"s3:AbortMultipartUpload"},
    ("sagemaker", "CreateModel"): {"sagemaker:AddTags", "iam:PassRole"},
    ("sagemaker", "CreateTrainingJob"): {"sagemaker:AddTags", "iam:PassRole"},
    ("sagemaker", "CreateFlowDefinition"): {"iam:PassRole"},
}


def operations_the_code_calls() -> set[tuple[str, str]]:
    """The AWS operations the package's source names (as boto3 methods, paginators or waiters)."""
    import botocore.session
    from botocore import xform_name

    source = "\n".join(
        path.read_text()
        for path in (ROOT / "plugins" / "active_learning").rglob("*")
        if path.suffix in (".py", ".json")
    )
    words = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", source))
    session = botocore.session.get_session()
    found = {call for word, call in INDIRECT_CALLS.items() if word in words}
    for service in ("s3", "sagemaker", "sagemaker-a2i-runtime", "sagemaker-runtime"):
        for operation in session.get_service_model(service).operation_names:
            name = xform_name(operation)
            if "_" in name and name in words:  # a one-word operation (Search) would match prose
                found.add(("s3" if service == "s3" else "sagemaker", operation))
    return found


def test_every_action_the_airflow_policy_grants_is_one_a_call_of_the_code_needs() -> None:
    """Issue 15.11: the policy and the code's calls, both ways, including calls a day does not
    always make (a stop at a review timeout, a deletion by retention); nothing granted that no call
    needs (StopTrainingJob and StopTransformJob were granted and never called)."""
    needed: set[str] = set()
    for signing_name, operation in operations_the_code_calls():
        if signing_name == "s3":
            needed.add(_S3_ACTIONS[operation][0])
        else:
            needed.add(f"sagemaker:{operation}")
        needed |= IMPLIED_ACTIONS.get((signing_name, operation), set())
    statements = json.loads(AIRFLOW_POLICY.read_text())["Statement"]
    granted = {action for statement in statements for action in _as_list(statement["Action"])}
    assert granted - needed == set(), "granted, and no call of the code needs it"
    assert needed - granted == set(), "a call of the code needs it, and it is not granted"
    assert "sagemaker:StopHumanLoop" in granted  # called only at a review timeout: found in the code


def _as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else value

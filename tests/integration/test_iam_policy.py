"""The shipped IAM policies (include/iam/) allow every AWS call of a day of the DAG, and nothing outside it.

The day is the end-to-end run (``end_to_end_day``): every botocore call of the Airflow tasks is
recorded with the access key that signed it; the Airflow connection's calls are checked against
airflow-policy.json, and what they hand to SageMaker with the execution role (training channels,
outputs, model artifacts, the algorithm image) against sagemaker-execution-role-policy.json.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest

from active_learning.settings import LoopSettings
from emulator.demo import ENDPOINT, airflow_env
from emulator.protocol import ACCOUNT_ID
from emulator.seed import BUCKET, INITIAL_MODEL, PREFIX, VALIDATION_MANIFEST
from tests.aws_contract import Permission, Policy, delegated_permissions, required_permissions
from tests.integration.conftest import ROOT, EndToEndDay

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


def test_the_policies_grant_no_wildcard_actions_and_the_readme_explains_every_placeholder() -> None:
    readme = (ROOT / "README.md").read_text()
    for path in (AIRFLOW_POLICY, EXECUTION_ROLE_POLICY):
        text = path.read_text()
        assert not re.search(r'"[a-z0-9]+:\*"', text), path
        for placeholder in set(re.findall(r"\$\{[A-Za-z]+\}", text)):
            assert f"`{placeholder}`" in readme, f"{placeholder} of {path.name} is not explained in README.md"

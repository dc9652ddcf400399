"""ModelLineageHook against moto's SageMaker: lineage reads, idempotent creates, retention."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from unittest import mock

import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.sagemaker.models import sagemaker_backends

from active_learning.hooks.models import ModelLineageHook

ACCOUNT = "123456789012"
REGION = "us-east-1"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/A2IRole"
IMAGE = f"123.dkr.ecr.{REGION}.amazonaws.com/object-detection:1"
INSTANCE = "ml.m4.xlarge"


@pytest.fixture
def hook() -> Iterator[ModelLineageHook]:
    with mock_aws():
        yield ModelLineageHook(aws_conn_id=None, region_name=REGION)


def _backend():
    return sagemaker_backends[ACCOUNT][REGION]


def _spy(hook: ModelLineageHook, method: str) -> mock.MagicMock:
    """Count calls of one client method while still letting moto answer them."""
    spy = mock.MagicMock(wraps=getattr(hook.conn, method))
    setattr(hook.conn, method, spy)
    return spy


def _artifact(n: int) -> str:
    return f"s3://my-bucket/active-learning/training/job-{n}/output/model.tar.gz"


def _model_and_config(hook: ModelLineageHook, n: int, created: datetime) -> tuple[str, str]:
    model = hook.ensure_model(f"al-model-{n}", IMAGE, _artifact(n), ROLE_ARN, tags={})
    config = hook.ensure_endpoint_config(f"al-config-{n}", model, INSTANCE)
    _backend()._models[model].creation_time = created
    _backend().endpoint_configs[config].creation_time = created
    return model, config


def test_serving_model_is_none_without_endpoint(hook: ModelLineageHook) -> None:
    assert hook.serving_model("object-detection") is None


def test_serving_model_reads_endpoint_config_model_and_tags(hook: ModelLineageHook) -> None:
    tags = {"active-learning:validation-mAP": "0.612000", "active-learning:training-lines": "42"}
    hook.ensure_model("al-model-1", IMAGE, _artifact(1), ROLE_ARN, tags)
    hook.ensure_model("al-model-2", IMAGE, _artifact(2), ROLE_ARN, {})
    hook.ensure_endpoint_config("al-config-1", "al-model-1", INSTANCE)
    hook.ensure_endpoint_config("al-config-2", "al-model-2", INSTANCE)
    hook.conn.create_endpoint(EndpointName="object-detection", EndpointConfigName="al-config-1")

    serving = hook.serving_model("object-detection")

    assert serving is not None
    assert serving.endpoint_name == "object-detection"
    assert serving.endpoint_status == "InService"
    assert serving.endpoint_config_name == "al-config-1"
    assert serving.model_name == "al-model-1"
    assert serving.model_arn == f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model/al-model-1"
    assert serving.model_data_url == _artifact(1)
    assert serving.image == IMAGE
    assert serving.tags == tags
    assert serving.to_dict() == {
        "endpoint_name": "object-detection",
        "endpoint_status": "InService",
        "endpoint_config_name": "al-config-1",
        "model_name": "al-model-1",
        "model_data_url": _artifact(1),
    }


def test_describe_or_none_reraises_other_errors(hook: ModelLineageHook) -> None:
    denied = ClientError(
        {"Error": {"Code": "AccessDeniedException", "Message": "not authorized"}}, "DescribeEndpoint"
    )
    hook.conn.describe_endpoint = mock.MagicMock(side_effect=denied)

    with pytest.raises(ClientError, match="not authorized"):
        hook.serving_model("object-detection")


def test_ensure_model_creates_once_and_adopts_on_rerun(hook: ModelLineageHook) -> None:
    create = _spy(hook, "create_model")
    tags = {"active-learning:training-lines": "0"}

    first = hook.ensure_model("al-model-1", IMAGE, _artifact(1), ROLE_ARN, tags)
    second = hook.ensure_model("al-model-1", IMAGE, _artifact(1), ROLE_ARN, tags)

    assert first == second == "al-model-1"
    assert create.call_count == 1
    described = hook.conn.describe_model(ModelName="al-model-1")
    assert described["PrimaryContainer"] == {"Image": IMAGE, "ModelDataUrl": _artifact(1)}
    assert described["ExecutionRoleArn"] == ROLE_ARN
    assert hook.tags_of(described["ModelArn"]) == tags


def test_ensure_endpoint_config_creates_once_and_adopts_on_rerun(hook: ModelLineageHook) -> None:
    hook.ensure_model("al-model-1", IMAGE, _artifact(1), ROLE_ARN, {})
    create = _spy(hook, "create_endpoint_config")

    assert hook.ensure_endpoint_config("al-config-1", "al-model-1", INSTANCE) == "al-config-1"
    assert hook.ensure_endpoint_config("al-config-1", "al-model-1", INSTANCE) == "al-config-1"

    assert create.call_count == 1
    (variant,) = hook.conn.describe_endpoint_config(EndpointConfigName="al-config-1")["ProductionVariants"]
    assert variant["ModelName"] == "al-model-1"
    assert variant["InstanceType"] == INSTANCE
    assert variant["InitialInstanceCount"] == 1


@pytest.mark.parametrize("name", ["al_model", "-al-model", "al.model", "", "a" * 64])
def test_invalid_names_raise_before_any_call(name: str) -> None:
    hook = ModelLineageHook(aws_conn_id=None, region_name=REGION)
    with (
        mock.patch.object(hook, "describe_or_none") as describe,
        mock.patch.object(hook, "create_model") as create_model,
        mock.patch.object(hook, "create_endpoint_config") as create_config,
    ):
        with pytest.raises(ValueError, match="invalid SageMaker model name"):
            hook.ensure_model(name, IMAGE, _artifact(1), ROLE_ARN, {})
        with pytest.raises(ValueError, match="invalid SageMaker endpoint config name"):
            hook.ensure_endpoint_config(name, "al-model-1", INSTANCE)

    describe.assert_not_called()
    create_model.assert_not_called()
    create_config.assert_not_called()


def test_prune_keeps_newest_and_the_config_and_model_in_use(hook: ModelLineageHook) -> None:
    created = {n: _model_and_config(hook, n, datetime(2026, 11, n, 12)) for n in range(1, 6)}
    # Not ours: same words, other prefix; must survive whatever their age.
    hook.ensure_model("other-model-1", IMAGE, _artifact(9), ROLE_ARN, {})
    hook.ensure_endpoint_config("other-config-1", "other-model-1", INSTANCE)
    _backend()._models["other-model-1"].creation_time = datetime(2020, 1, 1)
    _backend().endpoint_configs["other-config-1"].creation_time = datetime(2020, 1, 1)
    delete_config = _spy(hook, "delete_endpoint_config")
    delete_model = _spy(hook, "delete_model")

    # The oldest pair is the one in use (e.g. a rollback kept it): it must stay.
    deleted = hook.prune("al", keep=2, in_use_config=created[1][1])

    assert sorted(deleted) == ["al-config-2", "al-config-3", "al-model-2", "al-model-3"]
    assert delete_config.call_count == 2
    assert delete_model.call_count == 2
    configs = {c["EndpointConfigName"] for c in hook.conn.list_endpoint_configs()["EndpointConfigs"]}
    models = {m["ModelName"] for m in hook.conn.list_models()["Models"]}
    assert configs == {"al-config-1", "al-config-4", "al-config-5", "other-config-1"}
    assert models == {"al-model-1", "al-model-4", "al-model-5", "other-model-1"}


def test_prune_keeps_the_config_the_update_replaced_even_behind_rolled_back_ones(
    hook: ModelLineageHook,
) -> None:
    # 1 served before the update; 2 and 3 were rolled back (never served); 4 serves now
    for n in range(1, 5):
        _model_and_config(hook, n, datetime(2026, 11, n, 12))

    deleted = hook.prune("al", keep=2, in_use_config="al-config-4", previous_config="al-config-1")

    assert sorted(deleted) == ["al-config-2", "al-model-2"]
    configs = {c["EndpointConfigName"] for c in hook.conn.list_endpoint_configs()["EndpointConfigs"]}
    assert configs == {"al-config-1", "al-config-3", "al-config-4"}


def test_prune_deletes_nothing_within_retention(hook: ModelLineageHook) -> None:
    for n in (1, 2):
        _model_and_config(hook, n, datetime(2026, 11, n, 12))

    assert hook.prune("al", keep=2, in_use_config="al-config-2") == []
    assert len(hook.conn.list_models()["Models"]) == 2

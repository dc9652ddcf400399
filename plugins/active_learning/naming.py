"""Deterministic, valid AWS resource names.

Names are derived from their inputs (run date, a hash of the image URI or of a template and its
settings), never from uuid4 or the clock, so a retried task finds what its first try created.
botocore does not check name patterns client-side; this module guarantees them.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import date
from typing import Any

MAX_NAME_LENGTH = 63
# Human loops, flow definitions and human task UIs (A2I): lower case only.
A2I_NAME_PATTERN = re.compile(r"^[a-z0-9](-*[a-z0-9])*$")
# SageMaker models, endpoint configs, endpoints and training jobs.
SAGEMAKER_NAME_PATTERN = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
HASH_LENGTH = 12


class InvalidNameError(ValueError):
    """A name cannot be made valid (e.g. a prefix with no usable character)."""


def check_a2i_name(kind: str, name: str) -> str:
    """``name`` if it is a valid human loop / flow definition / task UI name, else InvalidNameError."""
    if len(name) > MAX_NAME_LENGTH or not A2I_NAME_PATTERN.match(name):
        raise InvalidNameError(f"invalid {kind} name {name!r}: 1-63 of a-z, 0-9 and inner hyphens")
    return name


def check_sagemaker_name(kind: str, name: str) -> str:
    """``name`` if it is a valid SageMaker model / config / job name, else InvalidNameError."""
    if len(name) > MAX_NAME_LENGTH or not SAGEMAKER_NAME_PATTERN.match(name):
        raise InvalidNameError(f"invalid SageMaker {kind} name {name!r}")
    return name


def stable_hash(*parts: Any, length: int = HASH_LENGTH) -> str:
    """A short hex digest of the parts, stable across processes and Python versions."""
    payload = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()[:length]


def _sanitize(text: str, lower: bool) -> str:
    text = text.lower() if lower else text
    allowed = "a-z0-9" if lower else "a-zA-Z0-9"
    return re.sub(f"[^{allowed}]+", "-", text).strip("-")


def _compose(prefix: str, suffix_parts: list[str], lower: bool) -> str:
    """``prefix-part-part``, the prefix shortened so that the whole fits in 63 characters."""
    suffix = "-".join(part for part in (_sanitize(p, lower) for p in suffix_parts) if part)
    room = MAX_NAME_LENGTH - len(suffix) - (1 if suffix else 0)
    head = _sanitize(prefix, lower)[: max(room, 0)].strip("-")
    name = f"{head}-{suffix}" if head and suffix else head or suffix
    pattern = A2I_NAME_PATTERN if lower else SAGEMAKER_NAME_PATTERN
    if not name or len(name) > MAX_NAME_LENGTH or not pattern.match(name):
        raise InvalidNameError(f"cannot make a valid name from prefix {prefix!r} and {suffix_parts!r}")
    return name


def a2i_name(prefix: str, *parts: str) -> str:
    """A valid human loop / flow definition / task UI name: lower case, 1-63 chars."""
    return _compose(prefix, list(parts), lower=True)


def sagemaker_name(prefix: str, *parts: str) -> str:
    """A valid SageMaker model / endpoint config / training job name: 1-63 chars."""
    return _compose(prefix, list(parts), lower=False)


def _day(run_date: date | str) -> str:
    return (run_date if isinstance(run_date, date) else date.fromisoformat(run_date)).strftime("%Y%m%d")


def human_loop_name(prefix: str, run_date: date | str, image_uri: str) -> str:
    """One loop per image and run day: a rerun of the day finds the loop it started."""
    return a2i_name(prefix, _day(run_date), stable_hash(image_uri, length=16))


def human_loop_prefix(prefix: str, run_date: date | str) -> str:
    """What every loop name of a run day starts with: how a run's loops are told apart in listings."""
    return a2i_name(prefix, _day(run_date)) + "-"


def human_loop_arn(flow_definition_arn: str, name: str) -> str:
    """A loop's ARN, in the account, region and partition of its flow definition."""
    return flow_definition_arn.split(":flow-definition/", 1)[0] + f":human-loop/{name}"


def task_ui_name(prefix: str, template: str) -> str:
    """Changes when the template changes (task UIs cannot be updated in place)."""
    return a2i_name(prefix, "ui", stable_hash(template))


def flow_definition_name(prefix: str, task_ui: str, settings: dict[str, Any]) -> str:
    """Changes when the task UI or any flow definition setting changes (they are immutable)."""
    return a2i_name(prefix, "fd", stable_hash(task_ui, settings))


def training_job_name(prefix: str, run_date: date | str, base_model: str) -> str:
    """One training job per run day and starting model: a retry re-attaches to it."""
    return sagemaker_name(prefix, _day(run_date), stable_hash(base_model, length=8))


def transform_job_name(prefix: str, run_date: date | str) -> str:
    """One Batch Transform job per run day (the first attempt's name): a retry or rerun re-attaches
    to it, whatever model serves by then."""
    return sagemaker_name(prefix, "bt", _day(run_date))


MAX_ATTEMPTS_PER_DAY = 3  # training or transform jobs started for one day at most


def attempt_name(base: str, attempt: int) -> str:
    """The name of a day's ``attempt``-th job (1: ``base``; then ``<base>-r2``, ``<base>-r3``)."""
    return base if attempt == 1 else f"{base[: MAX_NAME_LENGTH - 3]}-r{attempt}"


def model_name(prefix: str, model_data_uri: str) -> str:
    """A SageMaker model per artifact."""
    return sagemaker_name(prefix, "model", stable_hash(model_data_uri))


def endpoint_config_name(prefix: str, model: str, settings: dict[str, Any]) -> str:
    """An endpoint config per model and variant settings."""
    return sagemaker_name(prefix, "config", stable_hash(model, settings))


def model_update_pool(endpoint_name: str) -> str:
    """The Airflow pool (one slot) serializing the train, gate and update steps of an endpoint."""
    return f"active_learning__{endpoint_name}"


def learning_page_path(dag_id: str) -> str:
    """The path of a loop's Learning tab in the Airflow UI (plugins/active_learning_plugin.py)."""
    return f"/dags/{dag_id}/plugin/learning"

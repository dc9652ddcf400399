"""One typed, validated settings object for the loop, and the S3 layout of a run.

Settings come from the DAG's Params (defaults from environment variables); every value is checked
here, so a wrong setting fails at the first task with a message naming it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import date
from typing import Any

from active_learning.classes import VOC_CLASSES, ClassListError, validate_class_names
from active_learning.manifest import DEFAULT_ATTRIBUTE_NAME
from active_learning.naming import A2I_NAME_PATTERN, SAGEMAKER_NAME_PATTERN

BUCKET_PATTERN = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
ROLE_ARN_PATTERN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$")
WORKTEAM_ARN_PATTERN = re.compile(r"^arn:aws[a-z-]*:sagemaker:[a-z0-9-]+:\d{12}:workteam/.{1,200}$")
MAX_TASK_AVAILABILITY_SECONDS = 864_000
REQUIRED_SETTINGS = ("bucket", "role_arn", "workteam_arn", "endpoint_name")


class SettingsError(ValueError):
    """A setting is missing or invalid; the message names it."""


class ConfinementError(ValueError):
    """An S3 location outside the loop's bucket and prefix (and outside every allowed location)."""


def _s3_uri(bucket: str, key: str) -> str:
    return f"s3://{bucket}/{key}"


def split_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> ``(bucket, key)``."""
    if not uri.startswith("s3://") or "/" not in uri[5:]:
        raise ValueError(f"not an S3 object URI: {uri!r}")
    bucket, key = uri[5:].split("/", 1)
    return bucket, key


@dataclass(frozen=True)
class LoopSettings:
    """Settings of the active-learning loop.

    :param bucket: S3 bucket holding ``<prefix>/incoming``, ``runs``, ``a2i-output`` and ``training``.
    :param role_arn: IAM role SageMaker and A2I assume (S3 access to the bucket).
    :param workteam_arn: private workteam reviewing the images.
    :param endpoint_name: SageMaker endpoint serving the model.
    :param prefix: key prefix inside the bucket ("" for the bucket root).
    :param resource_prefix: prefix of the names of created AWS resources.
    :param class_names: class names in id order (the model's classes).
    :param label_attribute: the manifest's label attribute name.
    :param threshold: review images whose top score is below this.
    :param max_reviews: cap on reviews per run (``None``: no cap).
    :param audit_fraction: share of confident images also reviewed.
    :param task_count: workers per image (1-3).
    :param task_time_limit_seconds: time a worker has for one image (>= 30).
    :param task_availability_seconds: how long a loop waits for workers (<= 864000).
    :param min_new_labels: retrain only when at least this many new labelled images arrived.
    :param validation_manifest_uri: a fixed validation manifest; else a deterministic hold-out.
    :param validation_fraction: share of labelled images held out for validation when there is
        no fixed manifest.
    :param inference_instance_type: instance type of the endpoint.
    :param training_instance_type: instance type of training jobs.
    :param map_tolerance: accept a new model whose validation mAP is at most this much lower.
    :param keep_models: how many models and endpoint configs to keep.
    :param allowed_s3_uris: S3 locations outside ``s3://bucket/prefix/`` the loop may read
        (e.g. a shared validation manifest); everything else outside the prefix is refused.
    """

    bucket: str
    role_arn: str
    workteam_arn: str
    endpoint_name: str
    prefix: str = "active-learning"
    resource_prefix: str = "active-learning"
    class_names: tuple[str, ...] = VOC_CLASSES
    label_attribute: str = DEFAULT_ATTRIBUTE_NAME
    threshold: float = 0.5
    max_reviews: int | None = None
    audit_fraction: float = 0.0
    task_count: int = 1
    task_time_limit_seconds: int = 3600
    task_availability_seconds: int = MAX_TASK_AVAILABILITY_SECONDS
    min_new_labels: int = 10
    validation_manifest_uri: str | None = None
    validation_fraction: float = 0.2
    inference_instance_type: str = "ml.m4.xlarge"
    training_instance_type: str = "ml.p3.2xlarge"
    map_tolerance: float = 0.0
    keep_models: int = 3
    allowed_s3_uris: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._check(BUCKET_PATTERN.match(self.bucket) is not None, "bucket", "is not a valid S3 bucket name")
        self._check(ROLE_ARN_PATTERN.match(self.role_arn) is not None, "role_arn", "is not an IAM role ARN")
        self._check(
            WORKTEAM_ARN_PATTERN.match(self.workteam_arn) is not None,
            "workteam_arn",
            "is not a SageMaker workteam ARN",
        )
        self._check(
            SAGEMAKER_NAME_PATTERN.match(self.endpoint_name) is not None,
            "endpoint_name",
            "must be 1-63 letters, digits and hyphens",
        )
        self._check(
            not self.prefix.startswith("/") and not self.prefix.endswith("/"),
            "prefix",
            "must not start or end with '/'",
        )
        self._check(
            A2I_NAME_PATTERN.match(self.resource_prefix) is not None and len(self.resource_prefix) <= 24,
            "resource_prefix",
            "must be 1-24 lower-case letters, digits and hyphens",
        )
        try:
            object.__setattr__(self, "class_names", validate_class_names(self.class_names, "class_names"))
        except ClassListError as err:
            raise SettingsError(str(err)) from err
        self._check(bool(self.label_attribute.strip()), "label_attribute", "must not be empty")
        self._check(0.0 <= self.threshold <= 1.0, "threshold", "must be within 0..1")
        self._check(self.max_reviews is None or self.max_reviews >= 0, "max_reviews", "must be >= 0 or empty")
        self._check(0.0 <= self.audit_fraction <= 1.0, "audit_fraction", "must be within 0..1")
        self._check(1 <= self.task_count <= 3, "task_count", "must be 1, 2 or 3")
        self._check(self.task_time_limit_seconds >= 30, "task_time_limit_seconds", "must be >= 30")
        self._check(
            1 <= self.task_availability_seconds <= MAX_TASK_AVAILABILITY_SECONDS,
            "task_availability_seconds",
            f"must be within 1..{MAX_TASK_AVAILABILITY_SECONDS}",
        )
        self._check(self.min_new_labels >= 0, "min_new_labels", "must be >= 0")
        self._check(
            self.validation_manifest_uri is None or self.validation_manifest_uri.startswith("s3://"),
            "validation_manifest_uri",
            "must be an s3:// URI or empty",
        )
        self._check(0.0 < self.validation_fraction < 1.0, "validation_fraction", "must be within (0, 1)")
        self._check(self.map_tolerance >= 0.0, "map_tolerance", "must be >= 0")
        self._check(
            all(re.match(r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/", uri) for uri in self.allowed_s3_uris),
            "allowed_s3_uris",
            "must be s3://bucket/... locations",
        )
        self._check(self.keep_models >= 2, "keep_models", "must be >= 2 (the serving model and one more)")

    def _check(self, ok: bool, name: str, problem: str) -> None:
        if not ok:
            raise SettingsError(f"setting {name}={getattr(self, name)!r} {problem}")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> LoopSettings:
        """Build settings from Params or a dict; empty strings mean "not set"; unknown keys go to ``extra``.

        :raises SettingsError: naming a missing or invalid setting.
        """
        known = {f.name: f for f in fields(cls) if f.name != "extra"}
        kwargs: dict[str, Any] = {}
        for name, value in values.items():
            if name not in known or value is None or (value == "" and name != "prefix"):
                continue
            kwargs[name] = _coerce(name, value, known[name].type)
        missing = [name for name in REQUIRED_SETTINGS if name not in kwargs]
        if missing:
            raise SettingsError(f"missing required setting(s): {', '.join(missing)}")
        extra = {k: v for k, v in values.items() if k not in known}
        return cls(**kwargs, extra=extra)

    # S3 layout (DESIGN.md section 4) ---------------------------------------------------------
    def key(self, *parts: str) -> str:
        """A key under the configured prefix."""
        return "/".join(p.strip("/") for p in (self.prefix, *parts) if p.strip("/"))

    def uri(self, *parts: str) -> str:
        return _s3_uri(self.bucket, self.key(*parts))

    def incoming_prefix(self, day: date) -> str:
        return self.key("incoming", day.isoformat()) + "/"

    def run_key(self, day: date, name: str) -> str:
        return self.key("runs", day.isoformat(), name)

    @property
    def root_uri(self) -> str:
        """``s3://bucket/prefix/``: everything the loop reads or writes lies under it."""
        return _s3_uri(self.bucket, self.key()) + ("/" if self.key() else "")

    def check_inside(self, uri: str, what: str, within: str | None = None) -> str:
        """``uri`` if it lies under ``within`` (default: the loop's root) or an allowed location.

        :param what: names the URI in the error (e.g. ``"the source-ref of a manifest line"``).
        :raises ConfinementError: naming ``what``, the URI and where it had to be.
        """
        allowed = (within or self.root_uri, *self.allowed_s3_uris)
        if isinstance(uri, str) and any(uri.startswith(location) for location in allowed):
            return uri
        raise ConfinementError(
            f"{what} {uri!r} is outside {allowed[0]}"
            + (f" and the allowed locations {list(self.allowed_s3_uris)}" if self.allowed_s3_uris else "")
            + ": the loop reads and writes only there (setting allowed_s3_uris allows more)"
        )

    @property
    def a2i_output_uri(self) -> str:
        return self.uri("a2i-output") + "/"

    @property
    def training_output_uri(self) -> str:
        return self.uri("training") + "/"


def _coerce(name: str, value: Any, annotation: Any) -> Any:
    """Turn Param/env values (often strings) into the field's type, with an error naming the field."""
    kind = str(annotation)
    try:
        if kind.startswith("tuple"):
            if isinstance(value, str):
                value = [part.strip() for part in value.split(",")]
            if not isinstance(value, Sequence):
                raise TypeError("expected a list")
            return tuple(value)
        if "int" in kind and "float" not in kind:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise TypeError("expected a whole number")
            return int(value)
        if "float" in kind:
            if isinstance(value, bool):
                raise TypeError("expected a number")
            return float(value)
        return str(value)
    except (TypeError, ValueError) as err:
        raise SettingsError(f"setting {name}={value!r}: {err}") from err

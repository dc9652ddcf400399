"""One typed, validated settings object for the loop, and the S3 layout of a run.

Each ``LoopSettings`` field carries its default, type, bounds and description: the DAG's Params
are built from them (:func:`setting_schemas`, defaults from ``AL_<NAME>`` environment variables
through :class:`EnvironmentDefaults`), and every value is checked here, so a wrong setting fails
at the first task with a message naming it.
"""

from __future__ import annotations

import difflib
import math
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields
from datetime import date
from typing import Any

from active_learning.classes import VOC_CLASSES, ClassListError, validate_class_names
from active_learning.manifest import DEFAULT_ATTRIBUTE_NAME, DEFAULT_MAX_BOXES
from active_learning.naming import A2I_NAME_PATTERN, SAGEMAKER_NAME_PATTERN
from active_learning.reviews import REVIEW_BACKENDS
from active_learning.selection import BOX_UNCERTAINTY, STRATEGIES

BUCKET_PATTERN = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
# S3's general purpose bucket naming rules beyond the characters and length
# (docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html)
IP_ADDRESS = re.compile(r"^\d+\.\d+\.\d+\.\d+$")
RESERVED_BUCKET_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
RESERVED_BUCKET_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")
MAX_PREFIX_BYTES = 900  # of S3's 1,024-byte keys: room for runs/<day>/..., training/<job>/...
ROLE_ARN_PATTERN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$")
WORKTEAM_ARN_PATTERN = re.compile(r"^arn:aws[a-z-]*:sagemaker:[a-z0-9-]+:\d{12}:workteam/.{1,200}$")
MAX_TASK_AVAILABILITY_SECONDS = 864_000
PREDICT_MODES = ("realtime", "batch_transform", "auto")
ENVIRONMENT_PREFIX = "AL_"
# JSON-schema bound keywords a field may carry in its metadata, with the check and how it reads.
BOUNDS: tuple[tuple[str, Callable[[Any, Any], bool], str], ...] = (
    ("minimum", operator.ge, ">="),
    ("exclusiveMinimum", operator.gt, ">"),
    ("maximum", operator.le, "<="),
    ("exclusiveMaximum", operator.lt, "<"),
)
TRUE_WORDS = frozenset({"true", "yes", "1", "on"})
FALSE_WORDS = frozenset({"false", "no", "0", "off"})


class SettingsError(ValueError):
    """A setting is missing or invalid; the message names it."""


class ConfinementError(ValueError):
    """An S3 location outside the loop's bucket and prefix (and outside every allowed location)."""


def _s3_uri(bucket: str, key: str) -> str:
    return f"s3://{bucket}/{key}"


def bucket_name_problem(name: str) -> str | None:
    """What makes ``name`` no S3 bucket name; ``None`` when it is one."""
    if not BUCKET_PATTERN.match(name):
        return "must be 3-63 lower-case letters, digits, dots and hyphens, a letter or digit at each end"
    if ".." in name:
        return "must not hold two adjacent dots"
    if IP_ADDRESS.match(name):
        return "must not be formatted as an IP address"
    reserved = [p for p in RESERVED_BUCKET_PREFIXES if name.startswith(p)]
    reserved += [s for s in RESERVED_BUCKET_SUFFIXES if name.endswith(s)]
    if reserved:
        return f"uses the reserved {reserved[0]!r}"
    return None


def prefix_problem(prefix: str) -> str | None:
    """What makes ``prefix`` no key prefix the loop can use; ``None`` when it is one ('' is the root)."""
    if not prefix:
        return None
    if prefix.startswith("/") or prefix.endswith("/"):
        return "must not start or end with '/'"
    if any(ord(character) < 32 or ord(character) == 127 for character in prefix):
        return "must not hold control characters"
    if any(segment in ("", ".", "..") for segment in prefix.split("/")):
        return "must not hold empty, '.' or '..' segments"
    if len(prefix.encode("utf-8")) > MAX_PREFIX_BYTES:
        return f"must be at most {MAX_PREFIX_BYTES} bytes (S3 keys are at most 1,024)"
    return None


def split_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> ``(bucket, key)``."""
    if not uri.startswith("s3://") or "/" not in uri[5:]:
        raise ValueError(f"not an S3 object URI: {uri!r}")
    bucket, key = uri[5:].split("/", 1)
    return bucket, key


def is_s3_object_uri(uri: str) -> bool:
    """``s3://bucket/key`` with a valid bucket name and a key naming an object (not empty, not a folder)."""
    try:
        bucket, key = split_s3_uri(uri)
    except ValueError:
        return False
    return bucket_name_problem(bucket) is None and bool(key.strip("/")) and not key.endswith("/")


def setting(
    default: Any = MISSING,
    *,
    description: str,
    choices: Sequence[str] | Callable[[], Sequence[str]] | None = None,
    **bounds: float,
) -> Any:
    """A settings field: default, description, allowed values and bounds (``minimum``, ``maximum``,
    ``exclusiveMinimum``, ``exclusiveMaximum``), the one source for the Params and the checks.

    :param default: the default; none for a required setting.
    :param description: what the setting means (the trigger form shows it).
    :param choices: the allowed values of a text setting (the trigger form offers them), or what
        gives them when they are read (a registry that plugins may extend).
    :param bounds: JSON-schema bounds of a number.
    """
    unknown = set(bounds) - {keyword for keyword, _, _ in BOUNDS}
    if unknown:
        raise TypeError(f"unknown bound(s) {sorted(unknown)}")
    metadata: dict[str, Any] = {"description": description, **bounds}
    if choices is not None:
        metadata["enum"] = choices if callable(choices) else list(choices)
    if default is MISSING:
        return field(metadata=metadata)
    return field(default=default, metadata=metadata)


def allowed_values(metadata: Mapping[str, Any]) -> list[str] | None:
    """The values a setting with choices allows now; ``None`` for a setting without choices."""
    choices = metadata.get("enum")
    if choices is None:
        return None
    return list(choices() if callable(choices) else choices)


def value_problem(value: Any, metadata: Mapping[str, Any]) -> str | None:
    """What is wrong with a value outside the choices or the bounds in ``metadata``; ``None`` when
    it is allowed."""
    allowed = allowed_values(metadata)
    if allowed is not None and value is not None and value not in allowed:
        return "must be one of " + ", ".join(allowed)
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if all(check(value, metadata[keyword]) for keyword, check, _ in BOUNDS if keyword in metadata):
        return None
    return "must be " + " and ".join(f"{sign} {metadata[kw]}" for kw, _, sign in BOUNDS if kw in metadata)


@dataclass(frozen=True)
class LoopSettings:
    """Settings of the active-learning loop.

    Each field's description and bounds are in its metadata (see :func:`setting`); the DAG's
    Params and the README's settings table are derived from them.
    """

    bucket: str = setting(description="S3 bucket of the loop's data")
    role_arn: str = setting(description="IAM role SageMaker and A2I assume (S3 access to the bucket)")
    workteam_arn: str | None = setting(
        None,
        description="private workteam ARN (arn:aws:sagemaker:REGION:ACCOUNT:workteam/private-crowd/NAME); "
        "required with review_backend a2i",
    )
    endpoint_name: str = setting("active-learning-od", description="SageMaker endpoint serving the model")
    prefix: str = setting(
        "active-learning",
        description="key prefix in the bucket ('' for the bucket root): incoming/, runs/, a2i-output/ "
        "and training/ live below it",
    )
    resource_prefix: str = setting(
        "active-learning",
        description="prefix of the names of created AWS resources (lower case, at most 24 characters)",
    )
    initial_model_data_url: str | None = setting(
        None,
        description="s3://.../model.tar.gz deployed when there is no endpoint yet (under the loop's "
        "prefix or an allowed location)",
    )
    class_names: tuple[str, ...] = setting(VOC_CLASSES, description="class names in id order")
    label_attribute: str = setting(DEFAULT_ATTRIBUTE_NAME, description="the manifest's label attribute name")
    threshold: float = setting(
        0.5, description="review images whose top score is below this", minimum=0, maximum=1
    )
    max_reviews: int | None = setting(
        None,
        description="reviews per run: a cap (the selection strategy keeps the most informative) and, "
        "with fill_review_budget, a target (empty: no cap)",
        minimum=0,
    )
    fill_review_budget: bool = setting(
        True,
        description="with max_reviews: when the threshold routes fewer images, review the confident "
        "images the selection strategy ranks most informative too (reason budget-fill); false: the "
        "seed's threshold routing only",
    )
    audit_fraction: float = setting(
        0.0, description="share of confident images also reviewed, reproducibly per run", minimum=0, maximum=1
    )
    # the default is what measured best against random picks in make experiment (docs/selection.md)
    selection_strategy: str = setting(
        BOX_UNCERTAINTY, description="which routed images max_reviews keeps", choices=STRATEGIES
    )
    random_share: float = setting(
        0.0,
        description="share of max_reviews drawn at random among the routed images, reproducibly per day",
        minimum=0,
        maximum=1,
    )
    initial_box_min_score: float = setting(
        0.1,
        description="reviewers see the model's boxes scoring at least this (a first, weak model scores "
        "low: 0.1 shows its best box on every routed image of the demo's first day)",
        minimum=0,
        maximum=1,
    )
    max_initial_boxes: int = setting(
        20, description="most model boxes a reviewer sees, the highest scoring first", minimum=0
    )
    task_count: int = setting(
        1, description="workers per image (answers are consolidated by majority)", minimum=1, maximum=3
    )
    max_boxes_per_image: int = setting(
        DEFAULT_MAX_BOXES,
        description="most boxes a reviewer's answer may hold (one with more is an error, not trained on)",
        minimum=1,
    )
    task_time_limit_seconds: int = setting(3600, description="time a worker has for one image", minimum=30)
    task_availability_seconds: int = setting(
        MAX_TASK_AVAILABILITY_SECONDS,
        description="how long a loop waits for workers",
        minimum=1,
        maximum=MAX_TASK_AVAILABILITY_SECONDS,
    )
    min_new_labels: int = setting(
        10, description="retrain only with at least this many new labelled images", minimum=0
    )
    validation_manifest_uri: str | None = setting(
        None,
        description="fixed validation manifest (s3://bucket/key under the loop's prefix or an allowed "
        "location); empty: a deterministic hold-out",
    )
    validation_fraction: float = setting(
        0.2,
        description="hold-out share when there is no fixed validation manifest",
        exclusiveMinimum=0,
        exclusiveMaximum=1,
    )
    inference_instance_type: str = setting("ml.m4.xlarge", description="endpoint instance type")
    predict_mode: str = setting(
        "realtime",
        description="how batch_predict predicts (auto: batch_transform from transform_min_images a day)",
        choices=PREDICT_MODES,
    )
    transform_min_images: int = setting(
        5000, description="predict_mode=auto uses Batch Transform from this many objects a day", minimum=1
    )
    transform_instance_type: str = setting("ml.m4.xlarge", description="Batch Transform instance type")
    transform_instance_count: int = setting(1, description="Batch Transform instances", minimum=1)
    transform_max_concurrent: int = setting(
        4, description="Batch Transform requests in flight per instance", minimum=1
    )
    training_instance_type: str = setting("ml.p3.2xlarge", description="training instance type")
    map_tolerance: float = setting(
        0.0, description="accept a new model at most this much worse in validation mAP", minimum=0
    )
    keep_models: int = setting(
        3,
        description="newest models and endpoint configs kept (the one in use and the one it replaced "
        "always are)",
        minimum=2,
    )
    allowed_s3_uris: tuple[str, ...] = setting(
        (),
        description="S3 locations (s3://bucket/prefix/) outside the loop's prefix that it may read, "
        "e.g. a shared validation manifest or initial model",
    )
    require_approval: bool = setting(False, description="ask a person before updating the endpoint")
    review_backend: str = setting(
        "a2i",
        description="who reviews: a2i (Amazon A2I, existing A2I customers) or label_studio (a "
        "self-hosted Label Studio, the Airflow connection label_studio_default)",
        choices=lambda: tuple(REVIEW_BACKENDS),
    )

    def __post_init__(self) -> None:
        for setting_field in fields(self):
            problem = value_problem(getattr(self, setting_field.name), setting_field.metadata)
            self._check(problem is None, setting_field.name, str(problem))
        bucket_problem = bucket_name_problem(self.bucket)
        self._check(bucket_problem is None, "bucket", f"is not a valid S3 bucket name: it {bucket_problem}")
        self._check(ROLE_ARN_PATTERN.match(self.role_arn) is not None, "role_arn", "is not an IAM role ARN")
        self._check(
            self.workteam_arn is None or WORKTEAM_ARN_PATTERN.match(self.workteam_arn) is not None,
            "workteam_arn",
            "is not a SageMaker workteam ARN",
        )
        self._check(
            SAGEMAKER_NAME_PATTERN.match(self.endpoint_name) is not None,
            "endpoint_name",
            "must be 1-63 letters, digits and hyphens",
        )
        problem = prefix_problem(self.prefix)
        self._check(problem is None, "prefix", str(problem))
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
        self._check(
            all(
                uri.startswith("s3://")
                and "/" in uri[5:]
                and bucket_name_problem(uri[5:].split("/")[0]) is None
                for uri in self.allowed_s3_uris
            ),
            "allowed_s3_uris",
            "must be s3://bucket/... locations",
        )
        for name in ("initial_model_data_url", "validation_manifest_uri"):
            self._check_object_inside(name)
        for name in REVIEW_BACKENDS[self.review_backend].required_settings:
            if getattr(self, name) in (None, "", ()):
                raise SettingsError(f"setting {name} is required with review_backend {self.review_backend!r}")

    def _check(self, ok: bool, name: str, problem: str) -> None:
        if not ok:
            raise SettingsError(f"setting {name}={getattr(self, name)!r} {problem}")

    def _check_object_inside(self, name: str) -> None:
        """An optional S3 object setting: empty, or an object under the loop's root or an allowed location."""
        uri = getattr(self, name)
        if uri is None:
            return
        self._check(
            is_s3_object_uri(uri), name, "must be s3://bucket/key (a valid bucket and a key) or empty"
        )
        try:
            self.check_inside(uri, f"setting {name}")
        except ConfinementError as err:
            raise SettingsError(str(err)) from err

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> LoopSettings:
        """Build settings from Params or a dict; empty strings and ``None`` mean "not set".

        :raises SettingsError: naming a missing, invalid or unknown setting (with the close match).
        """
        known = {f.name: f for f in fields(cls)}
        unknown = [name for name in values if name not in known]
        if unknown:
            raise SettingsError(
                "unknown setting(s): "
                + ", ".join(_with_suggestion(name, known) for name in unknown)
                + f"; the settings are {', '.join(known)}"
            )
        kwargs: dict[str, Any] = {}
        for name, value in values.items():
            if value is None or (value == "" and name != "prefix"):
                continue
            kwargs[name] = _coerce(name, value, known[name].type)
        missing = [name for name, f in known.items() if f.default is MISSING and name not in kwargs]
        if missing:
            raise SettingsError(f"missing required setting(s): {', '.join(missing)}")
        return cls(**kwargs)

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

        An allowed location is a folder (``s3://shared/validation`` allows ``s3://shared/validation/x``,
        not ``s3://shared/validation-old/x``) or exactly one object.

        :param what: names the URI in the error (e.g. ``"the source-ref of a manifest line"``).
        :raises ConfinementError: naming ``what``, the URI and where it had to be.
        """
        allowed = (within or self.root_uri, *self.allowed_s3_uris)
        if isinstance(uri, str) and any(_lies_under(uri, location) for location in allowed):
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


@dataclass(frozen=True)
class DagSettings:
    """Knobs of the DAG itself, not of a run: connections, how often waits check, how long the day
    waits for its reviews, the pool of the model update. Read once at parse time from ``AL_<NAME>``
    variables (:meth:`EnvironmentDefaults.dag_settings`), never from the trigger form."""

    aws_conn_id: str = setting("aws_default", description="the Airflow connection to AWS")
    review_conn_id: str = setting(
        "",
        description="the Airflow connection of a review backend outside AWS (label_studio: an HTTP "
        "connection; empty: label_studio_default)",
    )
    template_path: str = setting(
        "", description="the A2I worker task template (empty: include/templates/bounding-box.liquid.html)"
    )
    waiter_delay_seconds: int = setting(
        30, description="seconds between checks of endpoints and jobs", minimum=1
    )
    review_poll_seconds: float = setting(300, description="seconds between checks of the reviews", minimum=1)
    review_timeout_hours: float = setting(
        240, description="how long a day waits for its reviews", exclusiveMinimum=0
    )
    min_completed_fraction: float = setting(
        1.0,
        description="share of the day's reviews whose completion ends the wait",
        exclusiveMinimum=0,
        maximum=1,
    )
    review_on_timeout: str = setting(
        "continue",
        description="at the review timeout: continue with the answers given, or fail the day (its "
        "labels are kept for later days; it neither trains nor updates)",
        choices=("continue", "fail"),
    )
    predict_shards: int = setting(
        1,
        description="real-time prediction of a day spread over this many predict_shard tasks (dynamic "
        "task mapping; each worker takes some), by a hash of the image key; batch_predict then routes "
        "the whole day. 1: batch_predict predicts the day itself",
        minimum=1,
        maximum=64,
    )
    retry_delay_seconds: float = setting(300, description="seconds before a failed task's retry", minimum=0)
    model_update_pool: str = setting(
        "",
        description="the Airflow pool (1 slot, deferred tasks counted) that serializes train, gate and "
        "update; empty: active_learning__<endpoint_name>",
    )
    target_validation_map: float = setting(
        0.8,
        description="validation mAP the loop aims for: a day routing fewer images than max_reviews "
        "while the serving model is below it is starving (the day's record, the Learning page); 0: never",
        minimum=0,
        maximum=1,
    )
    # the day's estimated cost (runs/<day>/summary.json); defaults: AWS's public us-east-1 prices,
    # sources in docs/cost.md
    review_price_per_object: float = setting(
        0.08,
        description="USD per image whose review completed (A2I custom workflows: 0.08; a self-hosted "
        "Label Studio: what a review costs you)",
        minimum=0,
    )
    training_price_per_hour: float = setting(
        3.825, description="USD per training instance-hour (ml.p3.2xlarge: 3.825)", minimum=0
    )
    transform_price_per_hour: float = setting(
        0.24, description="USD per Batch Transform instance-hour (ml.m4.xlarge: 0.24)", minimum=0
    )
    alert_sns_topic_arn: str = setting(
        "",
        description="SNS topic that gets the loop's alerts (a failed day, late reviews, empty days) "
        "through the Amazon provider's SnsNotifier; empty: no alert unless alert_notifier is set",
    )
    alert_notifier: str = setting(
        "",
        description="class path of another Airflow notifier for the alerts (e.g. "
        "airflow.providers.slack.notifications.slack.SlackNotifier); empty: SnsNotifier",
    )
    alert_notifier_kwargs: str = setting(
        "",
        description="JSON object of that notifier's arguments (templated with the run's context); "
        "the alert's text is added under alert_message_argument",
    )
    alert_message_argument: str = setting(
        "message", description="the notifier argument that carries the alert's text (SlackNotifier: text)"
    )
    late_review_hours: float = setting(
        24,
        description="alert once when a day is still not done this many hours after it started "
        "(its reviews, or its approval, are late)",
        exclusiveMinimum=0,
    )
    empty_days_alert: int = setting(
        3,
        description="alert when this many days in a row had no image (data stopped arriving); 0: never",
        minimum=0,
    )

    def __post_init__(self) -> None:
        for setting_field in fields(self):
            problem = value_problem(getattr(self, setting_field.name), setting_field.metadata)
            if problem:
                raise SettingsError(
                    f"setting {setting_field.name}={getattr(self, setting_field.name)!r} {problem}"
                )


def _lies_under(uri: str, location: str) -> bool:
    if location.endswith("/"):
        return uri.startswith(location)
    return uri == location or uri.startswith(location + "/")


def _with_suggestion(name: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    return f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else "")


def _coerce(name: str, value: Any, annotation: Any) -> Any:
    """Turn Param/env values (often strings) into the field's type, with an error naming the field."""
    kind = str(annotation)
    try:
        if kind == "bool":
            if isinstance(value, bool):
                return value
            word = str(value).strip().lower()
            if word not in TRUE_WORDS | FALSE_WORDS:
                raise ValueError("expected true or false")
            return word in TRUE_WORDS
        if kind.startswith("tuple"):
            if isinstance(value, str):
                value = [part.strip() for part in value.split(",")] if value.strip() else []
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
            number = float(value)
            if not math.isfinite(number):
                raise ValueError("expected a finite number")
            return number
        return str(value)
    except (TypeError, ValueError) as err:
        raise SettingsError(f"setting {name}={value!r}: {err}") from err


# Params: one JSON-schema-like spec per setting -------------------------------------------------
JSON_TYPES = {
    "str": "string",
    "str | None": ["null", "string"],
    "int": "integer",
    "int | None": ["null", "integer"],
    "float": "number",
    "bool": "boolean",
    "tuple[str, ...]": "array",
}


def setting_schemas(defaults: Mapping[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """One spec per setting, in field order: ``default``, JSON-schema ``type`` (and ``items``),
    bounds and ``description``; what the DAG turns into ``Param(**spec)``.

    :param defaults: defaults replacing the fields' own (e.g. :meth:`EnvironmentDefaults.values`);
        a required setting without one defaults to ``""`` (the form asks for it, the first task
        names it while it is empty).
    """
    defaults = defaults or {}
    schemas = {}
    for setting_field in fields(LoopSettings):
        name, kind = setting_field.name, str(setting_field.type)
        if kind not in JSON_TYPES:
            raise TypeError(f"setting {name}: no JSON type for {kind}")
        default = defaults.get(name, "" if setting_field.default is MISSING else setting_field.default)
        spec: dict[str, Any] = {
            "default": list(default) if isinstance(default, tuple) else default,
            "type": JSON_TYPES[kind],
            **setting_field.metadata,
        }
        if kind.startswith("tuple"):
            spec["items"] = {"type": "string"}
        if "enum" in spec:  # the values allowed now: the trigger form offers them in a list
            spec["enum"] = allowed_values(spec)
        schemas[name] = spec
    return schemas


def environment_variable(name: str) -> str:
    """The environment variable that gives a default: ``threshold`` -> ``AL_THRESHOLD``."""
    return ENVIRONMENT_PREFIX + name.upper()


@dataclass
class EnvironmentDefaults:
    """Defaults from ``AL_<NAME>`` environment variables, read without ever raising.

    A bad value (``AL_THRESHOLD=abc``, or out of bounds) must not remove the whole DAG: it is
    recorded in :attr:`problems`, naming the variable, its value and what is wrong, and the built-in
    default stands in for it; the DAG fails every task with those problems until they are fixed.

    :param environ: the environment (``os.environ``).
    :param overrides: values over the environment's, already typed (a loops file's entry; see
        :mod:`active_learning.loops`), checked the same way.
    :param overrides_source: how a bad override is named (``loop pets: setting``).
    """

    environ: Mapping[str, str]
    #: typed values over the environment's (a loops file's entry), and how a bad one is named
    overrides: Mapping[str, Any] = field(default_factory=dict)
    overrides_source: str = "setting"
    problems: list[str] = field(default_factory=list)
    # the problem of each setting whose given default is bad (the trigger form says so)
    invalid: dict[str, str] = field(default_factory=dict)

    def _problem(self, name: str, raw: Any, what: str, source: str | None = None) -> None:
        problem = f"{source or environment_variable(name)}={raw!r} {what}"
        self.invalid.setdefault(name, problem)
        if problem not in self.problems:
            self.problems.append(problem)

    def settings(self, kind: type | None = None) -> dict[str, Any]:
        """The defaults of ``kind``'s fields (default :class:`LoopSettings`) that ``AL_<NAME>``
        variables set, each parsed, allowed and within bounds; a bad one is recorded and left out."""
        values: dict[str, Any] = {}
        for setting_field in fields(kind or LoopSettings):
            name = setting_field.name
            raw = self.environ.get(environment_variable(name))
            if raw is None:
                continue
            if raw == "" and name != "prefix":
                continue  # set but empty: not set (an empty prefix is the bucket root)
            try:
                value = _coerce(name, raw, setting_field.type)
            except SettingsError as err:
                self._problem(name, raw, f"is not valid for setting {name}: {err.__cause__}")
                continue
            problem = value_problem(value, setting_field.metadata)
            if problem:
                self._problem(name, raw, f"is not valid for setting {name}: {problem}")
                continue
            values[name] = value
        for setting_field in fields(kind or LoopSettings):
            name = setting_field.name
            if name not in self.overrides or self.overrides[name] is None:
                continue
            given, source = self.overrides[name], f"{self.overrides_source} {name}"
            try:
                value = _coerce(name, given, setting_field.type)
            except SettingsError as err:
                self._problem(name, given, f"is not valid: {err.__cause__}", source)
                continue
            problem = value_problem(value, setting_field.metadata)
            if problem:
                self._problem(name, given, problem, source)
                continue
            values[name] = value
        return values

    def param_specs(self) -> dict[str, dict[str, Any]]:
        """:func:`setting_schemas` with the environment's defaults; a setting whose variable is bad
        says so in its description (the trigger form shows it)."""
        schemas = setting_schemas(self.settings())
        for name, schema in schemas.items():
            if name in self.invalid:
                schema["description"] += (
                    f" (INVALID {self.invalid[name]}; every task fails until it is fixed)"
                )
        return schemas

    def dag_settings(self) -> DagSettings:
        """The DAG's own knobs; a bad value is recorded in :attr:`problems` and its default used."""
        return DagSettings(**self.settings(DagSettings))

"""The evaluation gate, the optional approval, and the blue/green endpoint update with retention."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.providers.amazon.aws.operators.base_aws import AwsBaseOperator
from airflow.providers.amazon.aws.utils import validate_execute_complete_event
from airflow.providers.amazon.aws.utils.mixins import aws_template_fields
from airflow.providers.common.compat.sdk import (
    AirflowException,
    AirflowFailException,
    AirflowSkipException,
    conf,
)
from airflow.providers.standard.operators.hitl import ApprovalOperator

from active_learning.assets import record_asset_events
from active_learning.day_summary import Prices, approval_markdown, estimated_cost
from active_learning.hooks.models import ModelLineageHook, ServingModel
from active_learning.lineage import update_endpoint_lineage
from active_learning.links.console import EndpointLink, TrainingJobLink
from active_learning.naming import endpoint_config_name, learning_page_path, model_name
from active_learning.operators.base import LoopOperatorMixin, as_mapping
from active_learning.operators.waiting import ENDPOINT_WAITING_STATUSES, WaitOrDeferMixin
from active_learning.settings import LoopSettings
from active_learning.training_data import (
    TAG_REJECTED,
    TAG_TRAINING_JOB,
    TAG_TRAINING_LINES,
    TAG_VALIDATION_MAP,
    evaluation_gate,
    final_metric,
    trained_from_serving,
)

if TYPE_CHECKING:
    from airflow.providers.openlineage.extractors import OperatorLineage


def _serving_or_fail(hook: ModelLineageHook, endpoint: str) -> ServingModel:
    serving = hook.serving_model(endpoint)
    if serving is None:
        raise AirflowException(f"Endpoint {endpoint} does not exist")
    return serving


def _skip_unless_trained_from_serving(
    hook: ModelLineageHook, job: Mapping[str, Any], serving: ServingModel
) -> None:
    """Skip the task when the job was not trained from the model the endpoint serves now."""
    decision = trained_from_serving(
        job["TrainingJobName"],
        hook.base_model_of(job),
        serving.endpoint_name,
        serving.model_name,
        serving.model_data_url,
    )
    if not decision.promote:
        raise AirflowSkipException(f"Not updating the endpoint: {decision.reason}")


class EvaluationGateOperator(LoopOperatorMixin, AwsBaseOperator[ModelLineageHook]):
    """Let the update through only when the new model was trained from the serving one and is not worse.

    First the lineage: a job trained from a model that no longer serves (another update landed since)
    skips the update. Then the quality: the training job's final ``validation:mAP`` against the
    serving model's (a tag on the model) within ``map_tolerance``; a worse model skips the update
    (the task is skipped, with the reason in its log).

    Its result carries ``approval``: the Markdown a person reads before approving the update (mAP,
    labels, the day's reviews, estimated cost, links).

    :param settings: the loop settings (see :class:`active_learning.settings.LoopSettings`).
    :param training: what ``IncrementalTrainingOperator`` returned.
    :param day: the day the run processes, ``YYYY-MM-DD``.
    :param reviews: what the review wait returned (its ``completed`` count), if known.
    :param manifest: what ``AugmentedManifestOperator`` returned (its ``converted`` count), if known.
    :param prices: what reviews and training cost, for the approval's estimate.
    """

    aws_hook_class = ModelLineageHook
    template_fields: Sequence[str] = aws_template_fields("settings", "training", "day", "reviews", "manifest")
    template_fields_renderers = {
        "settings": "json",
        "training": "json",
        "reviews": "json",
        "manifest": "json",
    }

    def __init__(
        self,
        *,
        settings: Mapping[str, Any] | str,
        training: Mapping[str, Any] | str,
        day: str = "",
        reviews: Mapping[str, Any] | str | None = None,
        manifest: Mapping[str, Any] | str | None = None,
        prices: Prices,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.settings = settings
        self.training = training
        self.day = day
        self.reviews = reviews
        self.manifest = manifest
        self.prices = prices

    def execute(self, context: Any) -> dict[str, Any]:
        settings = self.loop_settings
        serving = _serving_or_fail(self.hook, settings.endpoint_name)
        training = as_mapping(self.training, "training")
        job = self.hook.describe_training_job(training["training_job_name"])
        _skip_unless_trained_from_serving(self.hook, job, serving)
        recorded = serving.tags.get(TAG_VALIDATION_MAP)
        serving_map = float(recorded) if recorded else None
        new_map = training.get("validation_map")
        decision = evaluation_gate(new_map, serving_map, settings.map_tolerance)
        self.log.info("Evaluation gate: %s", decision.reason)
        if not decision.promote:
            raise AirflowSkipException(f"Not updating the endpoint: {decision.reason}")
        return {
            "promote": True,
            "reason": decision.reason,
            "new_map": new_map,
            "serving_map": serving_map,
            "approval": self._approval(context, settings, training, job, decision.reason, serving_map),
        }

    def _approval(
        self,
        context: Any,
        settings: LoopSettings,
        training: Mapping[str, Any],
        job: Mapping[str, Any],
        reason: str,
        serving_map: float | None,
    ) -> str:
        """The Markdown the approval shows."""
        reviews = as_mapping(self.reviews, "reviews") if self.reviews else {}
        manifest = as_mapping(self.manifest, "manifest") if self.manifest else {}
        completed = reviews.get("completed")
        training_seconds = float(job.get("BillableTimeInSeconds") or 0)
        base_url = conf.get("api", "base_url", fallback="").rstrip("/")
        return approval_markdown(
            day=str(self.day),
            reason=reason,
            new_map=training.get("validation_map"),
            serving_map=serving_map,
            training_lines=training.get("training_lines"),
            job_name=training["training_job_name"],
            job_url=TrainingJobLink().format_link(
                aws_domain=TrainingJobLink.get_aws_domain(self.hook.conn_partition),
                region_name=self.hook.conn_region_name,
                job_name=training["training_job_name"],
            ),
            reviews_completed=completed,
            labels=manifest.get("converted"),
            cost=estimated_cost(
                completed or 0, training_seconds, 0.0, manifest.get("converted") or 0, self.prices
            ),
            learning_page_url=f"{base_url}{learning_page_path(context['ti'].dag_id)}",
        )


class OptionalApprovalOperator(ApprovalOperator):
    """The standard provider's :class:`ApprovalOperator`, asked only when ``required`` renders true.

    :param required: ask a person to approve (templated, e.g. from a DAG Param); otherwise approve.
    """

    template_fields: Sequence[str] = (*ApprovalOperator.template_fields, "required")

    def __init__(self, *, required: bool | str = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.required = required

    def execute(self, context: Any) -> Any:
        if str(self.required).strip().lower() in ("true", "1", "yes"):
            return super().execute(context)
        self.log.info("Approval not required: approved automatically")
        return {"chosen_options": ["Approve"], "responded_by_user": None}


class UpdateEndpointOperator(WaitOrDeferMixin, LoopOperatorMixin, AwsBaseOperator[ModelLineageHook]):
    """Put the newly trained model on the endpoint without losing availability.

    Right before the update, compares and swaps: the training job must have been trained from the
    model the endpoint serves now, else the task skips naming both models (another update landed
    since; clearing an old day can never put an older model back). Then creates a model (tagged with
    its validation mAP and lineage) and an endpoint config from the training output, calls
    ``UpdateEndpoint`` with a blue/green deployment config (optionally with auto-rollback alarms),
    waits, verifies the endpoint now serves the new config, fails with the failure reason when the
    update rolled back, and keeps the newest ``keep_models`` configs and models, deleting older
    unused ones. A retry finds the update already done or under way.

    :param settings: the loop settings (see :class:`active_learning.settings.LoopSettings`).
    :param training: what ``IncrementalTrainingOperator`` returned.
    :param traffic_routing: blue/green ``TrafficRoutingConfiguration`` (default: ALL_AT_ONCE).
    :param termination_wait_seconds: how long the old fleet stays after the shift.
    :param rollback_alarms: CloudWatch alarm names that roll the update back.
    :param deferrable: wait in the triggerer rather than in a worker slot.
    :param waiter_delay: seconds between status checks.
    :param waiter_max_attempts: status checks before failing.
    """

    aws_hook_class = ModelLineageHook
    template_fields: Sequence[str] = aws_template_fields("settings", "training", "rollback_alarms")
    template_fields_renderers = {"settings": "json", "training": "json"}
    operator_extra_links = (EndpointLink(),)

    def __init__(
        self,
        *,
        settings: Mapping[str, Any] | str,
        training: Mapping[str, Any] | str,
        traffic_routing: dict[str, Any] | None = None,
        termination_wait_seconds: int = 300,
        rollback_alarms: Sequence[str] = (),
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        waiter_delay: int = 30,
        waiter_max_attempts: int = 120,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.training = training
        self.traffic_routing = traffic_routing or {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 0}
        self.termination_wait_seconds = termination_wait_seconds
        self.rollback_alarms = rollback_alarms
        self.deferrable = deferrable
        self.waiter_delay = waiter_delay
        self.waiter_max_attempts = waiter_max_attempts

    def deployment_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {
            "BlueGreenUpdatePolicy": {
                "TrafficRoutingConfiguration": self.traffic_routing,
                "TerminationWaitInSeconds": self.termination_wait_seconds,
            }
        }
        if self.rollback_alarms:
            config["AutoRollbackConfiguration"] = {"Alarms": [{"AlarmName": a} for a in self.rollback_alarms]}
        return config

    def _training_job(self) -> dict[str, Any]:
        return self.hook.describe_training_job(as_mapping(self.training, "training")["training_job_name"])

    def target_config_name(self, settings: LoopSettings, job: Mapping[str, Any]) -> str:
        """The endpoint config of the trained artifact (named from it: nothing is created)."""
        model = model_name(settings.resource_prefix, job["ModelArtifacts"]["S3ModelArtifacts"])
        return endpoint_config_name(
            settings.resource_prefix, model, {"instance": settings.inference_instance_type}
        )

    def create_target_config(
        self, settings: LoopSettings, serving: ServingModel, job: Mapping[str, Any]
    ) -> str:
        """Create (if absent) the model and endpoint config of the trained artifact; return the config."""
        artifact = job["ModelArtifacts"]["S3ModelArtifacts"]
        metric = final_metric(job)
        tags = {
            TAG_TRAINING_JOB: job["TrainingJobName"],
            TAG_TRAINING_LINES: str(as_mapping(self.training, "training").get("training_lines", 0)),
        }
        if metric is not None:
            tags[TAG_VALIDATION_MAP] = f"{metric:.6f}"
        model = self.hook.ensure_model(
            model_name(settings.resource_prefix, artifact), serving.image, artifact, settings.role_arn, tags
        )
        return self.hook.ensure_endpoint_config(
            self.target_config_name(settings, job), model, settings.inference_instance_type
        )

    def execute(self, context: Any) -> dict[str, Any]:
        settings = self.loop_settings
        endpoint = settings.endpoint_name
        self.persist_link(EndpointLink, context, endpoint_name=endpoint)
        job = self._training_job()
        serving = _serving_or_fail(self.hook, endpoint)
        config = self.target_config_name(settings, job)
        if serving.endpoint_config_name == config and serving.endpoint_status == "InService":
            self.log.info("Endpoint %s already serves %s", endpoint, config)
            return self._announce(context, self._verify(settings, config))
        if serving.endpoint_status in ENDPOINT_WAITING_STATUSES:
            # an earlier try's update (or another's): wait, then decide on what serves
            self.log.info("Endpoint %s is %s: waiting", endpoint, serving.endpoint_status)
            self.wait_for_endpoint(endpoint)
            return self._finish(context, settings, job)
        if serving.endpoint_status != "InService":
            # Failed, UpdateRollbackFailed, OutOfService...: the waiter would poll until it gives up
            described = self.hook.describe_endpoint(endpoint)
            raise AirflowException(
                f"Endpoint {endpoint} is {serving.endpoint_status}, not updatable: "
                f"{described.get('FailureReason', '')}"
            )
        # compare-and-swap: right before the update, the job must have been trained from what serves
        _skip_unless_trained_from_serving(self.hook, job, serving)
        config = self.create_target_config(settings, serving, job)
        self.log.info("Updating endpoint %s: %s -> %s", endpoint, serving.endpoint_config_name, config)
        self.hook.conn.update_endpoint(
            EndpointName=endpoint, EndpointConfigName=config, DeploymentConfig=self.deployment_config()
        )
        previous = serving.endpoint_config_name
        self.wait_for_endpoint(endpoint, previous_config=previous)
        return self._finish(context, settings, job, previous)

    def execute_complete(
        self, context: Any, event: dict[str, Any] | None = None, previous_config: str | None = None
    ) -> dict[str, Any]:
        validated = validate_execute_complete_event(event)
        settings = self.loop_settings
        if validated["status"] != "success":
            described = self.hook.describe_endpoint(settings.endpoint_name)
            raise AirflowException(
                f"Endpoint update did not finish: {validated.get('message')}; "
                f"status {described['EndpointStatus']}: {described.get('FailureReason', '')}"
            )
        return self._finish(context, settings, self._training_job(), previous_config)

    def _finish(
        self,
        context: Any,
        settings: LoopSettings,
        job: Mapping[str, Any],
        previous_config: str | None = None,
    ) -> dict[str, Any]:
        """After the wait: verified and announced, skipped when another model took over meanwhile,
        failed when the update rolled back."""
        config = self.target_config_name(settings, job)
        serving = _serving_or_fail(self.hook, settings.endpoint_name)
        if serving.endpoint_config_name != config and serving.endpoint_status == "InService":
            _skip_unless_trained_from_serving(self.hook, job, serving)
        return self._announce(context, self._verify(settings, config, previous_config))

    def _announce(self, context: Any, verified: dict[str, Any]) -> dict[str, Any]:
        """The serving model's identity on the event of the model Asset (the task's outlet)."""
        serving = _serving_or_fail(self.hook, verified["endpoint_name"])
        record_asset_events(
            context,
            self.outlets,
            {
                "endpoint_name": serving.endpoint_name,
                "endpoint_config_name": serving.endpoint_config_name,
                "model_name": serving.model_name,
                "model_arn": serving.model_arn,
                "model_data_url": serving.model_data_url,
                "training_job": serving.tags.get(TAG_TRAINING_JOB),
                "validation_map": serving.tags.get(TAG_VALIDATION_MAP),
            },
        )
        return verified

    def _reject_trained_model(self, reason: str) -> None:
        """Tag the training job whose model did not load, so that the day's next try retrains."""
        job = self._training_job()
        self.hook.conn.add_tags(
            ResourceArn=job["TrainingJobArn"], Tags=[{"Key": TAG_REJECTED, "Value": reason[:256]}]
        )

    def _verify(
        self, settings: LoopSettings, config: str, previous_config: str | None = None
    ) -> dict[str, Any]:
        described = self.hook.describe_endpoint(settings.endpoint_name)
        if described["EndpointStatus"] == "InService" and described["EndpointConfigName"] != config:
            reason = described.get("FailureReason") or "no failure reason given"
            self._reject_trained_model(reason)
            # retrying would deploy the same model and roll back again: fail once; clearing the
            # day trains a new attempt instead of this job
            raise AirflowFailException(
                f"Endpoint {settings.endpoint_name} rolled back to {described['EndpointConfigName']} "
                f"instead of {config}: {reason}. The training job is marked rejected: clear the day's "
                "incremental_training to train a new attempt"
            )
        if described["EndpointStatus"] != "InService":
            raise AirflowException(
                f"Endpoint {settings.endpoint_name} did not switch to {config}: it is "
                f"{described['EndpointStatus']} on {described['EndpointConfigName']} "
                f"(rolled back?): {described.get('FailureReason', 'no failure reason given')}"
            )
        deleted = self.hook.prune(settings.resource_prefix, settings.keep_models, config, previous_config)
        return {"endpoint_name": settings.endpoint_name, "endpoint_config_name": config, "deleted": deleted}

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage:
        """OpenLineage (called by its provider, when installed, after the task ran): the trained
        model's artifact in; the endpoint out (named by its ARN, see :mod:`active_learning.lineage`).
        From the rendered settings and training result: no AWS call.

        :param task_instance: the task instance that ran.
        """
        return update_endpoint_lineage(
            self.loop_settings,
            as_mapping(self.training, "training"),
            self.hook.conn_region_name,
            task_instance,
        )

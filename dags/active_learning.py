"""
### Active learning for object detection (SageMaker + Amazon A2I)

Every day, for the day that just ended (`data_interval_start`; a backfill for a date processes
the same day as the scheduled run for that date):

1. **deploy_model**: make sure the endpoint serves a model (created from `initial_model_data_url` if absent).
2. **create_human_review_workflow**: the worker task UI and flow definition, created idempotently
   (with `review_backend=label_studio`: the Label Studio project; the review tasks keep their ids).
3. **batch_predict**: predict `incoming/<day>/`; route uncertain images to review
   (`runs/<day>/predictions.jsonl`, unusable inputs in `runs/<day>/quarantine.jsonl`). With
   `predict_shards` over 1, mapped **predict_shard** tasks predict the day first, on any workers.
4. **start_human_loops**: one A2I human loop (or Label Studio task) per routed image, pre-filled
   with the model's boxes.
5. **wait_for_human_loops**: deferrable wait until the reviewers are done.
6. **augmented_manifest**: reviewers' boxes to `runs/<day>/augmented.manifest`.
7. **incremental_training**: train from the serving model on all labels so far (skipped when too few are new).
8. **evaluation_gate** then **approve_update** (only when the `require_approval` Param is set):
   the new model must not be worse than the serving one.
9. **update_endpoint**: blue/green update, verified; old configs and models pruned.
10. **failed_day**: runs only when a task of the day failed, and fails the DagRun naming it.

Days never wait for each other's reviews. Lineage stays linear by compare-and-swap: a day trains
from the model serving when its training starts, on all labels so far, and its update happens only
if that model still serves (else the update skips, naming both models, and the day's labels train
with the next training): clearing or rerunning an old day never puts an older model back. Only
train, gate and update are serialized, by an Airflow pool of one slot per endpoint
(`active_learning__<endpoint_name>`, deferred tasks counted), which must exist:
`airflow pools set active_learning__<endpoint_name> 1 "model updates" --include-deferred`.
A day that fails, or whose reviews time out with `review_on_timeout=fail`, keeps its labels for
later days but neither trains nor updates.
11. **day_summary**: the day's record, `runs/<day>/summary.json` (counts, mAP, gate, estimated
    cost), on the manifest Asset event; charted on the DAG's Learning page.

Settings are the Params below (defaults from `AL_*` environment variables, or from the loop's entry
in the loops file: one DAG `active_learning__<name>` per loop); see README.md.
"""

from __future__ import annotations

import gc
import math
import os
from datetime import timedelta

import pendulum
from airflow.sdk import DAG, CronDataIntervalTimetable, Param
from airflow.sdk.definitions.callback import AsyncCallback
from airflow.sdk.definitions.deadline import DeadlineAlert, DeadlineReference

from active_learning.alerts import alert_route, failed_day_message, late_day_message
from active_learning.assets import augmented_manifest_asset, serving_model_asset
from active_learning.day_summary import Prices
from active_learning.loops import Loop, read_loops
from active_learning.naming import learning_page_path, model_update_pool
from active_learning.operators.base import refuse_bad_environment
from active_learning.operators.deploy import DeployModelOperator
from active_learning.operators.endpoint import (
    EvaluationGateOperator,
    OptionalApprovalOperator,
    UpdateEndpointOperator,
)
from active_learning.operators.human_loops import StartHumanLoopsOperator
from active_learning.operators.human_workflow import DEFAULT_TEMPLATE, CreateHumanReviewWorkflowOperator
from active_learning.operators.manifest import AugmentedManifestOperator
from active_learning.operators.outcome import FailedDayOperator
from active_learning.operators.predict import BatchPredictOperator, PredictShardOperator
from active_learning.operators.summary import DaySummaryOperator
from active_learning.operators.training import IncrementalTrainingOperator
from active_learning.sensors.human_loops import HumanLoopSensor

SETTINGS = "{{ params | tojson }}"
# The day that just ended; a run triggered without a logical date has no data interval (the task
# context then lacks the key): the day before it ran.
DAY = (
    "{{ (data_interval_start | ds) if data_interval_start is defined and data_interval_start "
    "else macros.ds_add(dag_run.run_after | ds, -1) }}"
)


def loop_dag(loop: Loop) -> DAG:
    """The DAG of one loop: Params from its settings, its Assets, pool and alerts."""
    # One Param per LoopSettings field: default, type, bounds and description come from the field.
    # A bad value never breaks parsing (that would remove the DAG): it is recorded, the built-in
    # default stands in, and every task fails at once, without retries, naming it (pre_execute).
    specs, knobs = loop.specs, loop.knobs
    prices = Prices(
        knobs.review_price_per_object, knobs.training_price_per_hour, knobs.transform_price_per_hour
    )
    route = alert_route(knobs, loop.problems)
    # What the loop produces for other DAGs to follow (the Params' defaults name the bucket and endpoint).
    manifest_asset = augmented_manifest_asset(specs["bucket"].get("default"), specs["prefix"]["default"])
    model_asset = serving_model_asset(specs["endpoint_name"]["default"])
    # Train, gate, approval and update of every day take this pool's one slot in turn; the later steps
    # of a section outrank a new day's training for it, so that a started section finishes first.
    model_update = {
        "pool": knobs.model_update_pool or model_update_pool(specs["endpoint_name"]["default"]),
        "weight_rule": "absolute",
    }
    alerts: dict[str, object] = {}
    if route is not None:
        subject, message = failed_day_message(loop.dag_id)
        alerts["on_failure_callback"] = route.notifier(message, subject)
        subject, message = late_day_message(loop.dag_id, knobs.late_review_hours)
        alerts["deadline"] = DeadlineAlert(
            reference=DeadlineReference.DAGRUN_QUEUED_AT,
            interval=timedelta(hours=knobs.late_review_hours),
            callback=AsyncCallback(route.notifier_path, kwargs=route.arguments_with(message, subject)),
        )
    with DAG(
        dag_id=loop.dag_id,
        description="Daily active-learning loop: predict, human review (A2I or Label Studio), retrain, "
        "redeploy" + (f" (loop {loop.name})" if loop.name else ""),
        schedule=CronDataIntervalTimetable("@daily", timezone="UTC"),
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        catchup=False,
        # runs stay active while reviewers work: room for every day of the review timeout, so that the
        # scheduler never skips a day for lack of a run slot
        max_active_runs=math.ceil(knobs.review_timeout_hours / 24) + 2,
        default_args={
            "retries": 2,
            "retry_delay": timedelta(seconds=knobs.retry_delay_seconds),
            "aws_conn_id": knobs.aws_conn_id,
            "pre_execute": refuse_bad_environment(loop.problems),
        },
        params={name: Param(**spec) for name, spec in specs.items()},
        tags=[
            "active-learning",
            "sagemaker",
            "a2i",
            "object-detection",
            *([f"loop:{loop.name}"] if loop.name else []),
        ],
        doc_md=f"{__doc__}\n[Learning page]({learning_page_path(loop.dag_id)})",
        **alerts,
    ) as dag:
        deploy_model = DeployModelOperator(
            task_id="deploy_model",
            settings=SETTINGS,
            waiter_delay=knobs.waiter_delay_seconds,
        )
        review_workflow = CreateHumanReviewWorkflowOperator(
            task_id="create_human_review_workflow",
            settings=SETTINGS,
            template_path=knobs.template_path or DEFAULT_TEMPLATE,
            review_conn_id=knobs.review_conn_id or None,
            waiter_delay=knobs.waiter_delay_seconds,
        )
        batch_predict = BatchPredictOperator(
            task_id="batch_predict",
            settings=SETTINGS,
            day=DAY,
            shards=knobs.predict_shards,
            deferrable=True,
            waiter_delay=knobs.waiter_delay_seconds,
        )
        start_human_loops = StartHumanLoopsOperator(
            task_id="start_human_loops",
            settings=SETTINGS,
            day=DAY,
            review_set_up=review_workflow.output,
            review_conn_id=knobs.review_conn_id or None,
        )
        wait_for_human_loops = HumanLoopSensor(
            task_id="wait_for_human_loops",
            settings=SETTINGS,
            day=DAY,
            human_loops=start_human_loops.output,
            review_conn_id=knobs.review_conn_id or None,
            min_completed_fraction=knobs.min_completed_fraction,
            on_timeout=knobs.review_on_timeout,  # type: ignore[arg-type]  # one of DagSettings' choices
            timeout=timedelta(hours=knobs.review_timeout_hours).total_seconds(),
            poke_interval=knobs.review_poll_seconds,
            deferrable=True,
        )
        augmented_manifest = AugmentedManifestOperator(
            task_id="augmented_manifest",
            settings=SETTINGS,
            day=DAY,
            review_conn_id=knobs.review_conn_id or None,
            # answers already given are paid for: harvested even when the wait failed or timed out
            trigger_rule="all_done",
        )
        incremental_training = IncrementalTrainingOperator(
            task_id="incremental_training",
            settings=SETTINGS,
            day=DAY,
            priority_weight=1,
            **model_update,
            deferrable=True,
            waiter_delay=knobs.waiter_delay_seconds,
        )
        evaluation_gate = EvaluationGateOperator(
            task_id="evaluation_gate",
            settings=SETTINGS,
            training=incremental_training.output,
            day=DAY,
            reviews=wait_for_human_loops.output,
            manifest=augmented_manifest.output,
            prices=prices,
            priority_weight=2,
            **model_update,
        )
        approve_update = OptionalApprovalOperator(
            task_id="approve_update",
            subject="Update the active-learning endpoint with the newly trained model?",
            body="{{ ti.xcom_pull(task_ids='evaluation_gate')['approval'] }}",
            required="{{ params.require_approval }}",
            response_timeout=timedelta(days=2),
            priority_weight=3,
            **model_update,
        )
        update_endpoint = UpdateEndpointOperator(
            task_id="update_endpoint",
            settings=SETTINGS,
            training=incremental_training.output,
            priority_weight=4,
            **model_update,
            deferrable=True,
            waiter_delay=knobs.waiter_delay_seconds,
            outlets=[model_asset],
        )

        predict_tasks = [batch_predict]
        if knobs.predict_shards > 1:
            # the day's real-time predictions spread over the workers; batch_predict routes them all
            predict_shard = PredictShardOperator.partial(
                task_id="predict_shard", settings=SETTINGS, day=DAY, shards=knobs.predict_shards
            ).expand(shard=list(range(knobs.predict_shards)))
            predict_tasks.insert(0, predict_shard)
            predict_shard >> batch_predict
        [deploy_model, review_workflow] >> predict_tasks[0]
        batch_predict >> start_human_loops >> wait_for_human_loops >> augmented_manifest
        # trains only after a wait that succeeded: a day failed or timed out with on_timeout=fail keeps
        # its harvested labels for later days, but neither trains nor updates
        [wait_for_human_loops, augmented_manifest] >> incremental_training
        incremental_training >> evaluation_gate >> approve_update >> update_endpoint
        day_tasks = [
            deploy_model,
            review_workflow,
            *predict_tasks,
            start_human_loops,
            wait_for_human_loops,
            augmented_manifest,
            incremental_training,
            evaluation_gate,
            approve_update,
            update_endpoint,
        ]
        # The day's record once every other task is done, whatever their states.
        day_summary = DaySummaryOperator(
            task_id="day_summary",
            settings=SETTINGS,
            day=DAY,
            loop=loop.dag_id,
            # the shards' counts are batch_predict's
            summarized_tasks=[task.task_id for task in day_tasks if task.task_id != "predict_shard"],
            prices=prices,
            target_validation_map=knobs.target_validation_map,
            alert_route=route,
            empty_days_alert=knobs.empty_days_alert,
            outlets=[manifest_asset],
        )
        day_tasks >> day_summary
        # A failed task makes a failed DagRun (training that skips would otherwise leave the leaves green).
        failed_day = FailedDayOperator(task_id="failed_day")
        [*day_tasks, day_summary] >> failed_day
    return dag


# One DAG per loop, in the loops file's order (without one: the DAG active_learning). Building a DAG
# allocates thousands of short-lived objects (Airflow copies the DAG's Params into every task):
# the cyclic garbage collector would scan the whole heap of the parsing process several times over
# for none of it (make bench: docs/benchmark.md); reference counting frees them all the same.
_collecting = gc.isenabled()
gc.disable()
try:
    for _loop in read_loops(os.environ):
        globals()[_loop.dag_id] = loop_dag(_loop)
finally:
    if _collecting:
        gc.enable()

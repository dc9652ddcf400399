"""The loop's day records and review waits, read from Airflow's metadata database (api-server only).

Through the ORM session the api-server gives each request, as its own REST API reads XComs and
Asset events: the page shows what Airflow recorded, never what is in S3 (``runs/<day>/summary.json``
holds the same record, but the page must not need AWS credentials, nor AWS).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from airflow.models.asset import AssetEvent
from airflow.models.dag import DagModel
from airflow.models.taskinstance import TaskInstance
from airflow.models.xcom import XComModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from active_learning.learning_page.records import SUMMARY_EXTRA_KEY, SUMMARY_TASK, WAIT_TASK, WAITING_STATES

XCOM_KEY = "return_value"
# at most this many records of each source, the newest: years of days, a bounded page
MAX_RECORDS = 2000


def _record(value: Any) -> Mapping[str, Any] | None:
    """An XCom value as a record: the database holds it as JSON, sometimes once more as a JSON
    string; anything else (a custom XCom backend's reference to object storage) is not readable
    here and is skipped (the Asset event's copy stands in)."""
    if isinstance(value, str | bytes):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    return value if isinstance(value, Mapping) else None


def dag_exists(session: Session, dag_id: str) -> bool:
    return session.scalar(select(DagModel.dag_id).where(DagModel.dag_id == dag_id)) is not None


def xcom_records(session: Session, dag_id: str) -> list[tuple[str, Mapping[str, Any]]]:
    """``(run_id, record)`` of each run's ``day_summary`` return value, newest first."""
    rows = session.execute(
        select(XComModel.run_id, XComModel.value)
        .where(
            XComModel.dag_id == dag_id,
            XComModel.task_id == SUMMARY_TASK,
            XComModel.key == XCOM_KEY,
            XComModel.map_index == -1,
        )
        .order_by(XComModel.timestamp.desc())
        .limit(MAX_RECORDS)
    )
    return [(run_id, record) for run_id, value in rows if (record := _record(value)) is not None]


def event_records(session: Session, dag_id: str) -> list[tuple[str | None, Mapping[str, Any]]]:
    """``(run_id, record)`` of each Asset event of the DAG's runs that carries a day record, newest first."""
    rows = session.execute(
        select(AssetEvent.source_run_id, AssetEvent.extra)
        .where(AssetEvent.source_dag_id == dag_id)
        .order_by(AssetEvent.timestamp.desc())
        .limit(MAX_RECORDS)
    )
    found = []
    for run_id, extra in rows:
        record = _record((extra or {}).get(SUMMARY_EXTRA_KEY)) if isinstance(extra, Mapping) else None
        if record is not None:
            found.append((run_id, record))
    return found


def review_waits(session: Session, dag_id: str) -> list[tuple[str, str | None, datetime | None]]:
    """``(run_id, state, start_date)`` of each unfinished ``wait_for_human_loops`` task of the DAG."""
    rows = session.execute(
        select(TaskInstance.run_id, TaskInstance.state, TaskInstance.start_date).where(
            TaskInstance.dag_id == dag_id,
            TaskInstance.task_id == WAIT_TASK,
            TaskInstance.state.in_(sorted(WAITING_STATES)),
        )
    )
    return [(run_id, None if state is None else str(state), started) for run_id, state, started in rows]

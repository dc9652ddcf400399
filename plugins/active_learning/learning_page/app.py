"""The Learning page's FastAPI app, mounted in Airflow's api-server by the plugin.

Behind the api-server's own authentication and authorization: the same dependencies as its REST
API (``requires_access_dag``), so a request needs the UI's JWT (the ``_token`` cookie the UI's
login sets, which the Learning tab's same-origin iframe sends, or an ``Authorization: Bearer``
header) and read access to the DAG's runs, task instances and XComs. Without a token: 401; with
an invalid one, or without access: 403.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
from airflow.api_fastapi.common.db.common import SessionDep
from airflow.api_fastapi.core_api.security import requires_access_dag
from fastapi import Depends, FastAPI, HTTPException, Query, status
from fastapi.responses import HTMLResponse
from sqlalchemy.orm import Session

from active_learning.learning_page import store
from active_learning.learning_page.page import render_page
from active_learning.learning_page.records import (
    DEFAULT_LATE_AFTER_HOURS,
    Day,
    LateWait,
    days_from_records,
    late_waits,
    merge_sources,
)

URL_PREFIX = "/active-learning"
# the page is at <UI root>/active-learning/dags/<dag_id>: its links climb back to the UI's root
# relatively, so they work wherever the api-server is served (a base_url with a path included)
UI_ROOT_FROM_PAGE = "../../"
MAX_LATE_AFTER_HOURS = 24.0 * 365

READ_ACCESS = [
    Depends(requires_access_dag("GET", DagAccessEntity.RUN)),
    Depends(requires_access_dag("GET", DagAccessEntity.TASK_INSTANCE)),
    Depends(requires_access_dag("GET", DagAccessEntity.XCOM)),
]
LateAfterHours = Annotated[
    float,
    Query(
        ge=0,
        le=MAX_LATE_AFTER_HOURS,
        description="a run whose review wait has lasted longer than this many hours is late",
    ),
]


def _read(
    session: Session, dag_id: str, late_after_hours: float
) -> tuple[list[Day], list[LateWait], datetime]:
    if not store.dag_exists(session, dag_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"DAG {dag_id!r} not found")
    now = datetime.now(UTC)
    records = merge_sources(store.xcom_records(session, dag_id), store.event_records(session, dag_id))
    late = late_waits(store.review_waits(session, dag_id), now, late_after_hours)
    return days_from_records(records), late, now


# named so that no AWS operation reads like it: tests/integration/test_iam_policy.py takes the
# package's snake-case words for boto3 calls (SageMaker has an operation of the usual factory name)
def learning_page_app() -> FastAPI:
    """The app: the page, and the same data as JSON."""
    # no /docs or /openapi.json of its own: they would be served without authentication
    app = FastAPI(title="Active learning: Learning page", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/dags/{dag_id}", response_class=HTMLResponse, dependencies=READ_ACCESS)
    def learning_page(
        dag_id: str, session: SessionDep, late_after_hours: LateAfterHours = DEFAULT_LATE_AFTER_HOURS
    ) -> HTMLResponse:
        """The loop's Learning page."""
        days, late, now = _read(session, dag_id, late_after_hours)
        html = render_page(dag_id, days, late, late_after_hours, now, UI_ROOT_FROM_PAGE)
        # never cached: a day's record changes when its run is cleared and run again
        return HTMLResponse(html, headers={"Cache-Control": "no-store"})

    @app.get("/dags/{dag_id}/days", dependencies=READ_ACCESS)
    def learning_days(
        dag_id: str, session: SessionDep, late_after_hours: LateAfterHours = DEFAULT_LATE_AFTER_HOURS
    ) -> dict[str, Any]:
        """What the page shows, as JSON: the days (one record each), the late waits."""
        days, late, now = _read(session, dag_id, late_after_hours)
        return {
            "dag_id": dag_id,
            "as_of": now.isoformat(),
            "days": [{**vars(day), "outstanding": day.outstanding} for day in days],
            "starving": bool(days and days[-1].starving),
            "late_after_hours": late_after_hours,
            "late_reviews": [
                {"run_id": w.run_id, "state": w.state, "started": w.started.isoformat(), "hours": w.hours}
                for w in late
            ],
        }

    return app

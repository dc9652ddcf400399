"""The "Review" link of the review tasks: the backend's page of the run's reviews."""

from __future__ import annotations

from typing import Any

from airflow.providers.common.compat.sdk import BaseOperatorLink, XCom


class ReviewLink(BaseOperatorLink):
    """Where the run's reviews are: the A2I console's workflow, the Label Studio project..."""

    name = "Review"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        return XCom.get_value(ti_key=ti_key, key=self.xcom_key) or ""

    @classmethod
    def persist(cls, context: Any, url: str) -> None:
        context["ti"].xcom_push(key=cls().xcom_key, value=url)

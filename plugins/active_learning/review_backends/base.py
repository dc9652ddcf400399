"""The one interface of the review backends: what the day's review tasks ask of whoever reviews.

The four review tasks (``create_human_review_workflow``, ``start_human_loops``,
``wait_for_human_loops``, ``augmented_manifest``) name no backend: each looks the run's
``review_backend`` up in :data:`active_learning.reviews.REVIEW_BACKENDS` (imported only when the
task runs, never at DAG parse) and calls the methods below. The conversion of answers into manifest
lines is the domain core's, shared by all backends.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from functools import cached_property
from importlib import import_module
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from active_learning.reviews import REVIEW_BACKENDS, ReviewProgress, ReviewRequest
from active_learning.settings import LoopSettings

if TYPE_CHECKING:
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook
    from airflow.triggers.base import BaseTrigger


@dataclass(frozen=True)
class ReviewUi:
    """What the reviewers are shown, from the set-up task's arguments.

    :param template_path: the worker task template, for a backend that takes one (A2I's Liquid HTML).
    :param title: the task's title as reviewers see it.
    :param description: the task's description as reviewers see it.
    """

    template_path: str
    title: str
    description: str


class ReviewTask(Protocol):
    """What a backend gets from the review task running it: the run's settings and day, the task's
    S3 hook and AWS connection, its logger, the connection of a backend outside AWS, how many calls
    it may make at once, and its ways to wait and to link."""

    loop_settings: LoopSettings
    run_day: date
    s3: S3Hook
    log: Any
    review_conn_id: str | None
    concurrency: int

    def aws_hook(self, hook_class: type) -> Any:
        """A hook of ``hook_class`` on the task's AWS connection, its requests counted in the task's log."""

    def wait_or_defer(
        self,
        trigger_class: type,
        trigger_kwargs: dict[str, Any],
        waiter_name: str,
        waiter_kwargs: dict[str, Any],
        resume: dict[str, Any] | None = None,
        waiter_hook: Any = None,
    ) -> Any:
        """Wait in the triggerer (resuming in ``execute_complete``) or with the hook's waiter."""

    def persist_review_link(self, context: Any, url: str) -> None:
        """Show ``url`` as the task's "Review" link."""


PredictedSize = Callable[[str], "tuple[int, int] | None"]


class ReviewBackend:
    """One backend's side of the review tasks. A subclass is registered by name in
    :data:`active_learning.reviews.REVIEW_BACKENDS`, with the settings it requires.

    A *record* is one line of ``runs/<day>/human-loops.jsonl`` (``name``, ``source``, ``reason``,
    ``started``, and the backend's own keys); *started* is what :meth:`start` returns, passed as
    one value to the wait and the harvest.

    :param task: the review task running it.
    """

    name: ClassVar[str]

    def __init__(self, task: ReviewTask) -> None:
        self.task = task

    @cached_property
    def settings(self) -> LoopSettings:
        return self.task.loop_settings

    # set up --------------------------------------------------------------------------------------
    def set_up(self, context: Any, ui: ReviewUi) -> dict[str, Any]:
        """Make sure the backend is ready for the run (idempotent); the whole result is passed on to
        :meth:`start`. May wait (:meth:`ReviewTask.wait_or_defer`), then :meth:`set_up_complete`."""
        raise NotImplementedError

    def set_up_complete(self, context: Any, event: Mapping[str, Any] | None) -> dict[str, Any]:
        """The set-up's result after the wait :meth:`set_up` deferred to."""
        raise NotImplementedError(f"the {self.name} set-up does not defer")

    # start ---------------------------------------------------------------------------------------
    def start(
        self, requests: Iterable[ReviewRequest], set_up: Mapping[str, Any], context: Any
    ) -> dict[str, Any]:
        """Ask for a review of each request, adopting those an earlier try or run of the day asked
        for; write the day's records (``human-loops.jsonl``); return what the wait needs, with
        ``review_backend``, ``loops`` (records) and ``human_loops_uri`` at least."""
        raise NotImplementedError

    # wait ----------------------------------------------------------------------------------------
    def progress(self, started: Mapping[str, Any], own: frozenset[str]) -> ReviewProgress:
        """One check of the run's own reviews (``own``: the records' names)."""
        raise NotImplementedError

    def stop_open(self, started: Mapping[str, Any], own: frozenset[str]) -> int:
        """Stop the run's reviews still open (at the timeout); how many were stopped."""
        raise NotImplementedError

    def trigger(self, started: Mapping[str, Any], **wait: Any) -> BaseTrigger:
        """The trigger that waits for the run's reviews in the triggerer; ``wait`` holds the
        arguments of :class:`active_learning.triggers.review_wait.ReviewWaitTrigger`."""
        raise NotImplementedError

    # harvest -------------------------------------------------------------------------------------
    def harvest(
        self, records: Iterable[Mapping[str, Any]], predicted_size: PredictedSize
    ) -> Iterator[dict[str, Any]]:
        """One report per record: ``converted`` with its manifest ``line``, ``skipped`` or ``error``
        with a ``reason``; each answer for the image of its record (:func:`active_learning.manifest.
        convert_review` with ``recorded``)."""
        raise NotImplementedError


def review_backend(name: str, task: ReviewTask) -> ReviewBackend:
    """The backend registered as ``name``, for ``task`` (its module imported now, not at parse)."""
    module, _, class_name = REVIEW_BACKENDS[name].classpath.rpartition(".")
    backend_class: type[ReviewBackend] = getattr(import_module(module), class_name)
    return backend_class(task)

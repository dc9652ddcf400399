"""Routing policy: which images of a day go to human review, and why.

The default reproduces the seed: review an image when its top score over all detections is below
the threshold (exactly the threshold is confident). Beyond the seed, an image with no detection is
reviewed (the seed crashed on it), a day's reviews can be capped (which ones are kept is a selection
strategy, :mod:`active_learning.selection`), a capped day can fill its budget (when the threshold
routes fewer images than the cap, the confident images the strategy ranks most informative are
reviewed too: a model that grew confident, not right, keeps being asked), and a reproducible
random share of confident images is sent to review as an audit sample.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from active_learning.detections import Detection, top_score
from active_learning.selection import Rank, SelectionStrategy, uniform_draw

# Reasons are stable strings: they are written to predictions.jsonl and counted in reports.
REASON_NO_DETECTIONS = "no-detections"
REASON_LOW_CONFIDENCE = "low-confidence"
REASON_CONFIDENT = "confident"
REASON_AUDIT = "audit-sample"
REASON_OVER_BUDGET = "over-review-budget"
REASON_BUDGET_FILL = "budget-fill"


@dataclass(frozen=True, slots=True)
class Decision:
    """Whether an image goes to human review, with the reason and the score behind it."""

    review: bool
    reason: str
    top_score: float | None = None

    @property
    def uncertainty_rank(self) -> float:
        """Lower is more uncertain: an image with no detection ranks first."""
        return -1.0 if self.top_score is None else self.top_score


@dataclass(frozen=True, slots=True)
class RoutingPolicy:
    """Decides which images go to human review.

    :param threshold: review when the top score is below this (0..1); the seed used 0.5.
    :param max_reviews: at most this many reviews per run (``None``: no cap); ``selection`` chooses
        which are kept.
    :param audit_fraction: share (0..1) of confident images also sent to review, chosen at random
        but reproducibly for a given run key and image.
    :param selection: the strategy that chooses the reviews kept under ``max_reviews``.
    :param fill_budget: with ``max_reviews``, review the confident images the strategy ranks first
        when fewer are routed (``False``: the seed's threshold routing only).
    """

    threshold: float = 0.5
    max_reviews: int | None = None
    audit_fraction: float = 0.0
    selection: SelectionStrategy = field(default_factory=SelectionStrategy)
    fill_budget: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must be within 0..1, got {self.threshold!r}")
        if self.max_reviews is not None and self.max_reviews < 0:
            raise ValueError(f"max_reviews must be >= 0 or None, got {self.max_reviews!r}")
        if not 0.0 <= self.audit_fraction <= 1.0:
            raise ValueError(f"audit_fraction must be within 0..1, got {self.audit_fraction!r}")

    def decide(self, detections: Iterable[Detection]) -> Decision:
        """The decision for one image on its own (before the day's cap and audit sample)."""
        score = top_score(detections)
        if score is None:
            return Decision(True, REASON_NO_DETECTIONS, None)
        if score < self.threshold:
            return Decision(True, REASON_LOW_CONFIDENCE, score)
        return Decision(False, REASON_CONFIDENT, score)

    def in_audit_sample(self, run_key: str, image_key: str) -> bool:
        """Whether a confident image is drawn for audit: a hash, so the same run draws the same images."""
        if self.audit_fraction <= 0.0:
            return False
        return uniform_draw(run_key, image_key) < self.audit_fraction

    def with_audit(self, decision: Decision, run_key: str, image_key: str) -> Decision:
        """A confident image drawn for the audit sample becomes a review (reason ``audit-sample``)."""
        if not decision.review and self.in_audit_sample(run_key, image_key):
            return Decision(True, REASON_AUDIT, decision.top_score)
        return decision

    def budget(self, run_key: str) -> ReviewBudget:
        """The day's review budget under this policy's cap and selection strategy."""
        return ReviewBudget(self.max_reviews, self.selection.random_share, run_key, self.fill_budget)

    def decide_day(
        self,
        decisions: Mapping[str, Decision],
        run_key: str,
        detections: Mapping[str, Sequence[Detection]] | None = None,
        counts: Mapping[int, int] | None = None,
    ) -> dict[str, Decision]:
        """Apply the day-wide rules to per-image decisions keyed by image.

        Confident images drawn for audit become reviews; then, when there are more reviews than
        ``max_reviews``, the selection strategy chooses those kept (audit samples last) and the
        others are marked ``over-review-budget``; when there are fewer and ``fill_budget`` is set,
        the confident images the strategy ranks first fill the budget (``budget-fill``). The result
        does not depend on the mapping's order.
        Streaming callers use :meth:`with_audit` and :meth:`budget` directly.

        :param detections: each image's detections (the strategy ranks from them; least-confidence
            needs only the decisions).
        :param counts: labelled boxes per class so far (for ``class-balance``).
        """
        day = {key: self.with_audit(decision, run_key, key) for key, decision in decisions.items()}
        budget = self.budget(run_key)
        for key, decision in day.items():
            rank = None if detections is None else self.selection.rank(detections[key], counts)
            budget.offer(key, decision, rank)
        return {key: budget.final(key, decision) for key, decision in day.items()}


@dataclass(frozen=True, slots=True)
class _Evictable:
    """Heap entry ordered so that the review to give up first is on top of a min-heap."""

    priority: tuple[bool, Rank, str]

    def __lt__(self, other: _Evictable) -> bool:
        return self.priority > other.priority


class _Lowest:
    """The ``limit`` lowest priorities of a stream, in a heap of at most ``limit`` entries."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.heap: list[_Evictable] = []

    def push(self, priority: tuple[bool, Rank, str]) -> None:
        heapq.heappush(self.heap, _Evictable(priority))
        if len(self.heap) > self.limit:
            heapq.heappop(self.heap)

    def keys_in_order(self) -> list[str]:
        return [priority[2] for priority in sorted(entry.priority for entry in self.heap)]


class ReviewBudget:
    """The ``limit`` reviews to keep out of a stream: memory grows with the limit, not the stream.

    Priority: uncertainty reviews before audit samples, then the strategy's rank (default: the
    lowest top score, no detection first: least-confidence), then the image key, so the outcome does
    not depend on the stream's order. With a ``random_share``, that share of the limit goes to the
    reviews with the lowest random draw (a hash of ``run_key`` and the image) among those the
    strategy did not keep. With ``fill``, the confident images with the lowest rank (then key) fill
    what the reviews leave of the limit.

    :param limit: reviews kept at most (``None``: all).
    :param random_share: share (0..1) of the limit drawn at random.
    :param run_key: seeds the random draws (the day): the same day draws the same images.
    :param fill: fill the limit with confident images when fewer reviews are offered.
    """

    def __init__(
        self, limit: int | None, random_share: float = 0.0, run_key: str = "", fill: bool = False
    ) -> None:
        self.limit = limit
        self.run_key = run_key
        share = SelectionStrategy(random_share=random_share)
        self._random = 0 if limit is None else share.random_picks(limit)
        self._by_rank = _Lowest(limit or 0)
        self._by_draw = _Lowest(limit or 0) if self._random else None
        self._fill = _Lowest(limit) if fill and limit else None
        self._kept: set[str] | None = None
        self._filled: set[str] = set()

    def __len__(self) -> int:
        """Images held so far: never more than the limit per kind of pick (rank, budget fill)."""
        return len(self._by_rank.heap) + (len(self._fill.heap) if self._fill is not None else 0)

    def offer(self, key: str, decision: Decision, rank: Rank | None = None) -> None:
        """Offer one image's decision.

        :param rank: from :meth:`SelectionStrategy.rank`; default: least-confidence's.
        """
        if self.limit is None:
            return
        self._kept = None
        rank = (decision.uncertainty_rank,) if rank is None else rank
        if not decision.review:
            if self._fill is not None:
                self._fill.push((False, rank, key))
            return
        audit = decision.reason == REASON_AUDIT
        self._by_rank.push((audit, rank, key))
        if self._by_draw is not None:
            self._by_draw.push((audit, (uniform_draw(self.run_key, key, "random-share"),), key))

    def final(self, key: str, decision: Decision) -> Decision:
        """The decision once every image was offered: a review kept or marked
        ``over-review-budget``; a confident image that fills the budget becomes ``budget-fill``."""
        if self.limit is None:
            return decision
        if self._kept is None:
            self._kept = set(self._by_rank.keys_in_order()[: self.limit - self._random])
            if self._by_draw is not None:
                drawn = [k for k in self._by_draw.keys_in_order() if k not in self._kept]
                self._kept.update(drawn[: self._random])
            left = self.limit - len(self._kept)
            self._filled = (
                set(self._fill.keys_in_order()[:left]) if self._fill is not None and left > 0 else set()
            )
        if not decision.review:
            if key in self._filled:
                return Decision(True, REASON_BUDGET_FILL, decision.top_score)
            return decision
        if key in self._kept:
            return decision
        return replace(decision, review=False, reason=REASON_OVER_BUDGET)

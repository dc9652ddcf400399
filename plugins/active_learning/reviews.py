"""Progress of a run's human loops, from ``ListHumanLoops`` summaries."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Set
from dataclasses import dataclass, field
from typing import Any

TERMINAL_STATUSES = frozenset({"Completed", "Failed", "Stopped"})


@dataclass(frozen=True)
class ReviewProgress:
    """Status counts of a run's loops and the reasons of the failed or stopped ones."""

    expected: int
    counts: dict[str, int] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_summaries(cls, summaries: Iterable[Mapping[str, Any]], names: Set[str]) -> ReviewProgress:
        """Count the summaries of the run's own loops (``names``); other loops in the listing do not count."""
        counts: Counter[str] = Counter()
        failures: dict[str, str] = {}
        for summary in summaries:
            name = summary.get("HumanLoopName", "")
            if name not in names:
                continue
            status = summary.get("HumanLoopStatus", "Unknown")
            counts[status] += 1
            if status in ("Failed", "Stopped"):
                failures[name] = summary.get("FailureReason") or status
        return cls(len(names), dict(counts), failures)

    @property
    def seen(self) -> int:
        return sum(self.counts.values())

    @property
    def completed(self) -> int:
        return self.counts.get("Completed", 0)

    @property
    def terminal(self) -> int:
        return sum(n for status, n in self.counts.items() if status in TERMINAL_STATUSES)

    def is_done(self, min_completed_fraction: float = 1.0) -> bool:
        """All loops are terminal, or enough of them completed to go on.

        :param min_completed_fraction: share of the expected loops whose completion is enough;
            1.0 waits until every loop is terminal.
        """
        if self.expected == 0:
            return True
        all_terminal = self.seen >= self.expected and self.terminal >= self.expected
        return all_terminal or self.completed >= min_completed_fraction * self.expected

    def to_dict(self, max_failures: int = 100) -> dict[str, Any]:
        """A small serializable form (trigger events land in the metadata database): counts are
        complete, failure reasons are kept for the first ``max_failures`` loops by name."""
        failures = dict(sorted(self.failures.items())[:max_failures])
        return {"expected": self.expected, "counts": self.counts, "failures": failures}

    def describe(self) -> str:
        counts = ", ".join(f"{status} {n}" for status, n in sorted(self.counts.items())) or "none seen"
        return f"{self.terminal}/{self.expected} loops terminal ({counts})"


def loop_names(records: Iterable[Mapping[str, Any]]) -> frozenset[str]:
    """The names of a run's loops, from the lines of its ``human-loops.jsonl``."""
    return frozenset(record["name"] for record in records)

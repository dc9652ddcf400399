from __future__ import annotations

import threading
import time

import pytest

from active_learning.concurrency import bounded_map


def test_all_items_are_mapped() -> None:
    assert sorted(bounded_map(lambda x: x * 2, range(50), concurrency=4)) == [(i, i * 2) for i in range(50)]


def test_never_more_than_concurrency_in_flight_and_input_pulled_lazily() -> None:
    in_flight = 0
    peak = 0
    pulled = 0
    lock = threading.Lock()

    def items():
        nonlocal pulled
        for i in range(40):
            pulled += 1
            yield i

    def work(item: int) -> int:
        nonlocal in_flight, peak
        with lock:
            in_flight += 1
            peak = max(peak, in_flight)
        time.sleep(0.001)
        with lock:
            in_flight -= 1
        return item

    results = bounded_map(work, items(), concurrency=3)
    next(results)
    assert pulled <= 4
    list(results)
    assert peak <= 3


def test_errors_propagate() -> None:
    def boom(item: int) -> int:
        raise RuntimeError(f"item {item}")

    with pytest.raises(RuntimeError, match="item"):
        list(bounded_map(boom, [1], concurrency=2))
    with pytest.raises(ValueError, match="concurrency"):
        list(bounded_map(boom, [1], concurrency=0))

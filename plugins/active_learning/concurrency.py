"""Bounded-concurrency mapping: at most ``concurrency`` items in flight, whatever the input size."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from queue import SimpleQueue
from typing import TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


def bounded_map(
    function: Callable[[Item], Result], items: Iterable[Item], concurrency: int
) -> Iterator[tuple[Item, Result]]:
    """Yield ``(item, function(item))`` as calls finish, in completion order.

    Items are pulled from ``items`` lazily, so memory stays bounded by ``concurrency`` whatever the
    number of items; each finished call is replaced by the next item before its result is yielded,
    so the calls in flight stay at ``concurrency`` while the caller works. Finished calls arrive
    through a queue (O(1) each, unlike ``concurrent.futures.wait`` over every call in flight). An
    exception raised by ``function`` propagates to the caller (after the calls in flight finish);
    ``function`` should catch what it wants to record instead.
    """
    if concurrency < 1:
        raise ValueError(f"concurrency must be >= 1, got {concurrency}")
    iterator = iter(items)
    finished: SimpleQueue[tuple[Item, Future[Result]]] = SimpleQueue()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:

        def start_next() -> bool:
            """Start the call of the next item; ``False`` when there is none."""
            try:
                item = next(iterator)
            except StopIteration:
                return False
            pool.submit(function, item).add_done_callback(lambda future: finished.put((item, future)))
            return True

        in_flight = 0
        while in_flight < concurrency and start_next():
            in_flight += 1
        while in_flight:
            item, future = finished.get()
            in_flight -= 1
            if start_next():
                in_flight += 1
            yield item, future.result()

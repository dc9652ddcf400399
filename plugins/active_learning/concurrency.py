"""Bounded-concurrency mapping: at most ``concurrency`` items in flight, whatever the input size."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


def bounded_map(
    function: Callable[[Item], Result], items: Iterable[Item], concurrency: int
) -> Iterator[tuple[Item, Result]]:
    """Yield ``(item, function(item))`` as calls finish, in completion order.

    Items are pulled from ``items`` lazily, so memory stays bounded by ``concurrency`` whatever the
    number of items. An exception raised by ``function`` propagates to the caller (after the calls
    in flight finish); ``function`` should catch what it wants to record instead.
    """
    if concurrency < 1:
        raise ValueError(f"concurrency must be >= 1, got {concurrency}")
    iterator = iter(items)
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        pending: dict[Future[Result], Item] = {}
        exhausted = False
        while True:
            while not exhausted and len(pending) < concurrency:
                try:
                    item = next(iterator)
                except StopIteration:
                    exhausted = True
                    break
                pending[pool.submit(function, item)] = item
            if not pending:
                return
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                yield pending.pop(future), future.result()

"""The one thread-pool runner: calls run concurrently while keeping DSPy's per-thread settings
(``dspy.context``, ``track_usage``), which live in a ContextVar that plain pool threads would not inherit.

    results = map_concurrently(fn, items, max_workers=8)          # a batch of calls, results in order
    with ContextPool(8) as pool:                                  # calls submitted as they come
        future = pool.submit(fn, item)

Every pool lmcot starts is a ``ContextPool``: work submitted runs in a copy of the submitter's context,
and leaving the ``with`` block (a failure, Ctrl-C) drops the calls not yet started rather than run,
and pay for, them."""

from __future__ import annotations

import contextvars
import threading
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from typing import Callable, Hashable, Iterable, Sequence, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class ContextPool(ThreadPoolExecutor):
    """A ``ThreadPoolExecutor`` whose ``submit`` runs ``fn`` inside a copy of the caller's context
    (DSPy settings included), and whose ``with`` block ends by dropping queued calls (see above)."""

    def submit(self, fn: Callable[..., R], /, *args, **kwargs) -> Future:
        return super().submit(contextvars.copy_context().run, fn, *args, **kwargs)

    def __exit__(self, *exc) -> bool:
        self.shutdown(wait=True, cancel_futures=True)
        return False


def distinct(items: Sequence[T], key: Callable[[T], Hashable]) -> tuple[list[T], list[int]]:
    """``(unique, where)``: the first item of each distinct ``key``, and for each item the index of its
    key in ``unique``; item i's result is then ``results[where[i]]``.

    Identical calls sent together are each paid for: DSPy's cache answers a repeat only once the first
    reply is stored, and concurrent ones all miss it (two self-consistency samples that wrote the same
    rationale, a GRPO group with equal completions). Callers ask once per distinct request instead, which
    is also what a serial run would have paid."""
    index: dict[Hashable, int] = {}
    unique: list[T] = []
    where: list[int] = []
    for item in items:
        k = key(item)
        if k not in index:
            index[k] = len(unique)
            unique.append(item)
        where.append(index[k])
    return unique, where


class CallLimit:
    """One bound on the calls in flight, shared by several ``map_concurrently`` runs that overlap
    (e.g. the judge's and the large LM's calls of one RL step): each run may start up to ``size``
    threads, and each call holds one of ``size`` slots while it runs. Separate per-map bounds would
    either cap the step below what the provider allows or add up past it."""

    def __init__(self, size: int):
        if size < 1:
            raise ValueError(f"a call limit needs at least 1 slot, got {size}")
        self.size = int(size)
        self._slots = threading.BoundedSemaphore(self.size)

    def bind(self, fn: Callable[[T], R]) -> Callable[[T], R]:
        def limited(x: T) -> R:
            with self:
                return fn(x)

        return limited

    def __enter__(self) -> CallLimit:
        """``with limit:`` holds one slot for the block (a call made outside ``map_concurrently``)."""
        self._slots.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self._slots.release()


def map_concurrently(fn: Callable[[T], R], items: Iterable[T], max_workers: int,
                     on_result: Callable[[R], None] | None = None, limit: CallLimit | None = None) -> list[R]:
    """``[fn(x) for x in items]`` on a thread pool, results in input order. ``on_result`` is called
    with each result as it completes (in completion order, e.g. to advance a progress bar). An
    exception from ``fn`` propagates; the calls not yet started are then dropped. With ``limit``,
    ``max_workers`` is ``limit.size`` and every call holds a slot of the shared limit."""
    items = list(items)
    if limit is not None:
        fn, max_workers = limit.bind(fn), limit.size
    if max_workers <= 1 or len(items) <= 1:
        results = []
        for x in items:
            results.append(fn(x))
            if on_result is not None:
                on_result(results[-1])
        return results
    with ContextPool(max_workers=min(max_workers, len(items))) as pool:
        futures = {pool.submit(fn, x): i for i, x in enumerate(items)}
        if on_result is not None:
            for future in as_completed(futures):
                on_result(future.result())
        return [f.result() for f in futures]

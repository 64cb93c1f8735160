"""Run calls concurrently while keeping DSPy's per-thread settings (``dspy.context``)."""

from __future__ import annotations

import contextvars
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def map_concurrently(fn: Callable[[T], R], items: Iterable[T], max_workers: int) -> list[R]:
    """``[fn(x) for x in items]`` on a thread pool, results in input order. DSPy keeps settings such
    as ``dspy.context(lm=...)`` in a ContextVar, which plain pool threads would not inherit."""
    items = list(items)
    if max_workers <= 1 or len(items) <= 1:
        return [fn(x) for x in items]
    pool = ThreadPoolExecutor(max_workers=min(max_workers, len(items)))
    try:
        futures = [pool.submit(contextvars.copy_context().run, fn, x) for x in items]
        return [f.result() for f in futures]
    finally:
        # On Ctrl-C or a failure, calls not yet started are dropped rather than run (and paid for).
        pool.shutdown(wait=True, cancel_futures=True)

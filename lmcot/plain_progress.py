"""Progress when stderr is not a terminal (nohup, a CI log, `2> file`): plain lines, not silence.

rich's live bar draws nothing until it stops when the console is not a terminal, so a long run under
nohup showed no progress at all. :func:`progress_bar` returns rich's ``Progress`` on a terminal and a
:class:`PlainProgress` (same small API: ``add_task``, ``advance``, ``update``, ``start``, ``stop``,
context manager) elsewhere, which prints ``label: 12/40 (30%), 1m05s elapsed`` at most every
``every_s`` seconds and at the end.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

_WRITE_LOCK = threading.Lock()


def _fmt(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m}m{s:02d}s" if m else f"{s}s"


class PlainProgress:
    def __init__(self, label: str = "", every_s: float = 30.0, stream=None) -> None:
        self.label, self.every_s = label, every_s
        self.stream = stream or sys.stderr
        self._tasks: dict[int, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def add_task(self, description: str = "", total: float | None = None, completed: float = 0, **_: Any) -> int:
        tid = len(self._tasks)
        self._tasks[tid] = {"description": description, "total": total, "completed": completed,
                            "start": time.monotonic(), "last": 0.0, "done": False}
        return tid

    def _print(self, task: dict[str, Any]) -> None:
        now = time.monotonic()
        total, done = task["total"], task["completed"]
        share = f" ({done / total:.0%})" if total else ""
        desc = task["description"]
        # The label once: descriptions often repeat it ("before RL: rationales" under "before RL").
        name = desc if desc.startswith(self.label) else " ".join(x for x in (self.label, desc) if x)
        line = f"{name}: {int(done)}/{int(total) if total else '?'}{share}, {_fmt(now - task['start'])} elapsed\n"
        # One write per line under a lock: bars of concurrent phases (rationales, answers) report from
        # several threads, and print() writes text and newline separately, so lines would interleave.
        with _WRITE_LOCK:
            self.stream.write(line)
            self.stream.flush()
        task["last"] = now

    def update(self, task_id: int, *, completed: float | None = None, advance: float = 0,
               description: str | None = None, **_: Any) -> None:
        with self._lock:  # worker threads advance one bar together: no lost counts, one final line
            task = self._tasks[task_id]
            if description is not None:
                task["description"] = description
            task["completed"] = (completed if completed is not None else task["completed"]) + advance
            finished = task["total"] is not None and task["completed"] >= task["total"]
            if finished and not task["done"]:
                task["done"] = True
                self._print(task)
            elif time.monotonic() - task["last"] >= self.every_s:
                self._print(task)

    def advance(self, task_id: int, advance: float = 1) -> None:
        self.update(task_id, advance=advance)

    def start(self) -> None:
        for task in self._tasks.values():
            task["last"] = time.monotonic()

    def stop(self) -> None:
        pass

    def __enter__(self) -> PlainProgress:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def is_terminal() -> bool:
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


def progress_bar(*columns: Any, label: str = "", disable: bool = False, **kwargs: Any):
    """rich ``Progress(*columns, **kwargs)`` on a terminal; :class:`PlainProgress` lines otherwise."""
    from rich.progress import Progress

    if disable or is_terminal():
        return Progress(*columns, disable=disable, **kwargs)
    return PlainProgress(label)


def table_console(stderr: bool = False):
    """A rich Console for result tables. Off a terminal rich assumes 80 columns and wraps a wide
    table into unreadable cells in a log or a pipe; there it gets room for the whole table (a
    ``COLUMNS`` setting still wins). On a terminal the terminal's width, as usual."""
    import os

    from rich.console import Console

    console = Console(stderr=stderr)
    if not console.is_terminal and not os.environ.get("COLUMNS"):
        console.width = _LOG_WIDTH
    return console


_LOG_WIDTH = 200  # wide enough for the experiment's nine-column table; rich sizes a table to its content

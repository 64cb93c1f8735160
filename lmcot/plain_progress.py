"""Progress when stderr is not a terminal (nohup, a CI log, `2> file`): plain lines, not silence.

rich's live bar draws nothing until it stops when the console is not a terminal, so a long run under
nohup showed no progress at all. :func:`progress_bar` returns rich's ``Progress`` on a terminal and a
:class:`PlainProgress` (same small API: ``add_task``, ``advance``, ``update``, ``start``, ``stop``,
context manager) elsewhere, which prints ``label: 12/40 (30%), 1m05s elapsed, 11.1/min, ETA 2m31s``
(the rate and the time left as rich's bar shows them, from the progress made since the bar started)
at most every ``every_s`` seconds and at the end.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

_WRITE_LOCK = threading.Lock()


def _fmt(seconds: float) -> str:
    h, rest = divmod(int(seconds), 3600)
    m, s = divmod(rest, 60)
    if h:
        return f"{h}h{m:02d}m{s:02d}s"
    return f"{m}m{s:02d}s" if m else f"{s}s"


def _rate(per_second: float) -> str:
    """Items per second, else per minute (down to 0.1/min), else per hour."""
    unit, value = ("s", per_second) if per_second >= 1 else ("min", per_second * 60) if per_second * 60 >= 0.1 \
        else ("h", per_second * 3600)
    return f"{value:.2f}/{unit}" if value < 10 else f"{value:.0f}/{unit}"


def _pace(done: float, start_done: float, total: float | None, elapsed: float) -> str:
    """``, 0.65/min, ETA 13m50s``: the rate since the bar started (a resumed run counts only this
    run's progress) and the time left at that rate. Empty until there is a rate to tell: at least one
    item done and a second gone (a rate from less is noise)."""
    made = done - start_done
    if made <= 0 or elapsed < 1.0:
        return ""
    per_second = made / elapsed
    text = f", {_rate(per_second)}"
    if total and done < total:
        text += f", ETA {_fmt((total - done) / per_second)}"
    return text


class PlainProgress:
    def __init__(self, label: str = "", every_s: float = 30.0, stream=None, clock=time.monotonic) -> None:
        self.label, self.every_s = label, every_s
        self.stream = stream or sys.stderr
        self.clock = clock  # a test passes its own
        self._tasks: dict[int, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def add_task(self, description: str = "", total: float | None = None, completed: float = 0, **_: Any) -> int:
        tid = len(self._tasks)
        self._tasks[tid] = {"description": description, "total": total, "completed": completed,
                            "start_completed": completed, "start": self.clock(), "last": 0.0, "done": False}
        return tid

    def _print(self, task: dict[str, Any]) -> None:
        now = self.clock()
        total, done = task["total"], task["completed"]
        share = f" ({done / total:.0%})" if total else ""
        desc = task["description"]
        # The label once: descriptions often repeat it ("before RL: rationales" under "before RL").
        name = desc if desc.startswith(self.label) else " ".join(x for x in (self.label, desc) if x)
        elapsed = now - task["start"]
        line = (f"{name}: {int(done)}/{int(total) if total else '?'}{share}, {_fmt(elapsed)} elapsed"
                f"{_pace(done, task['start_completed'], total, elapsed)}\n")
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
            elif self.clock() - task["last"] >= self.every_s:
                self._print(task)

    def advance(self, task_id: int, advance: float = 1) -> None:
        self.update(task_id, advance=advance)

    def start(self) -> None:
        for task in self._tasks.values():
            task["last"] = self.clock()

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

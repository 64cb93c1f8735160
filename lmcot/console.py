"""Everything lmcot prints to the terminal, in one place.

    say("kd:", "green", "complete under runs/q/kd, skipped")   # one labelled line, plain text, redacted
    rule("stage kd: teacher rationales")                       # a section heading
    with progress_bar("KD") as bar: ...                         # rich's bar, or plain lines off a terminal
    setup_logging(verbose)                                      # the commands' logging, secrets redacted

Every message goes to stderr as plain text (a path with ``[/x]`` in it is never read as rich markup)
and through ``lmcot.redact``. Off a terminal (nohup, a CI log, ``2> file``) rich's live bar would draw
nothing until it stops, so :func:`progress_bar` returns a :class:`PlainProgress` there (same small API:
``add_task``, ``advance``, ``update``, ``start``, ``stop``, context manager), which prints
``label: 12/40 (30%), 1m05s elapsed, 11.1/min, ETA 2m31s`` (rate and time left as rich's bar shows
them, from the progress made since the bar started) at most every ``every_s`` seconds and at the end.
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
    unit, value = (("s", per_second) if per_second >= 1 else ("min", per_second * 60) if per_second * 60 >= 0.1
                   else ("h", per_second * 3600))
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
        name = task_name(self.label, task["description"])
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


def progress_bar(label: str = "", *, disable: bool = False, transient: bool = False):
    """The one progress display. On a terminal, rich's bar: the name (``label`` and the task's
    description, the label once), the bar, done/total, time elapsed and left; ``transient`` clears it
    when done. Otherwise :class:`PlainProgress` lines under the same name."""
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TimeElapsedColumn,
                               TimeRemainingColumn)
    from rich.text import Text

    if not (disable or is_terminal()):
        return PlainProgress(label)

    class Name(ProgressColumn):
        def render(self, task) -> Text:  # plain text: a description with [brackets] is never markup
            return Text(task_name(label, task.description), style="bold")

    return Progress(Name(), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
                    disable=disable, transient=transient)


def task_name(label: str, description: str) -> str:
    """A bar's name: ``label`` then the description, the label once (descriptions often repeat it:
    "before RL: rationales" under "before RL")."""
    return description if description.startswith(label) else " ".join(x for x in (label, description) if x)


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


def _stderr():
    from rich.console import Console

    global _STDERR
    if _STDERR is None:
        _STDERR = Console(stderr=True)
    return _STDERR


_STDERR = None


def say(label: str, style: str, message: str) -> None:
    """``label message`` on stderr as plain text: never read as rich markup, secrets redacted."""
    from rich.text import Text

    from lmcot.redact import redact

    text = Text.assemble((label, style), " " if label else "", redact(str(message)))
    _stderr().print(text, highlight=False, soft_wrap=True)


def rule(title: str = "") -> None:
    """A section heading across the terminal (rich markup allowed: lmcot's own titles only)."""
    _stderr().rule(title)


def print_exception() -> None:
    """The current exception's traceback, without local variables (an API key may be one)."""
    _stderr().print_exception(show_locals=False)


class _RedactFilter:
    """Log records pass through lmcot.redact (a URL with a key in an error a library logs)."""

    def filter(self, record) -> bool:
        from lmcot.redact import redact

        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def setup_logging(verbose: bool, *, lm_calls: bool = True) -> None:
    """The commands' logging: warnings (``--verbose``: info) with every record redacted; the per-call
    notices of litellm, httpx and DSPy and the deprecation warnings transformers 5 raises inside TRL
    and peft only with ``--verbose``. ``lm_calls=False`` (a command that calls no LM, such as
    ``lmcot report``) does not import DSPy to quiet it."""
    import logging
    import os
    import warnings

    if not verbose:
        # transformers draws a bar for every weights load and save ("Loading weights", "Writing model
        # shards"): noise between lmcot's own progress lines. Its switch is the hub library's, read when
        # huggingface_hub is first imported (dspy may import it: set it first).
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, _RedactFilter) for f in handler.filters):
            handler.addFilter(_RedactFilter())
    if lm_calls:
        import dspy  # noqa: F401 - dspy sets up its loggers on import; quiet them after that, not before

    # Per-call notices (e.g. DSPy's "LM response was truncated" for every capped rationale) drown the
    # progress bars.
    for noisy in ("LiteLLM", "litellm", "httpx", "dspy"):
        logging.getLogger(noisy).setLevel(logging.WARNING if verbose else logging.ERROR)
    if not verbose:
        # TRL 1.16 and peft read model.is_gradient_checkpointing (TRL's configs set gradient_checkpointing),
        # names transformers 5 deprecates with a FutureWarning on every run; lmcot passes the new name
        # itself, and the reads inside TRL and peft have no switch.
        warnings.filterwarnings("ignore", message=r".*gradient_checkpointing.*", category=FutureWarning)

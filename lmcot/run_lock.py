"""One run at a time per output folder: ``lmcot compile / experiment / evaluate --out OUT``.

    with output_lock(out, "lmcot compile"):
        ...  # a second run on OUT fails at once: "OUT: another lmcot run (PID 4242, lmcot compile) ..."

Two runs writing one folder paid for every call twice and interleaved their traces and weights. The
lock is ``fcntl.flock`` on ``OUT/.lmcot.lock``: the kernel releases it when its process ends however
it ends (SIGKILL included), so a lock left by a killed run is simply taken over; the PID written in
the file is only for the message. Several processes of one ``torchrun`` / ``accelerate launch``
share the run: only the launch's rank 0 takes the lock (they write nothing the main process does not
coordinate; see lmcot.distributed). The lock is reentrant within a process (the command and the
library function it calls both hold it). POSIX only: elsewhere no lock is taken.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lmcot.errors import UserError

LOCK_FILE = ".lmcot.lock"

_HELD: dict[Path, int] = {}  # lock path -> nesting depth in this process
_HELD_LOCK = threading.Lock()


class OutputBusyError(UserError, RuntimeError):
    """Another live run holds the output folder."""


def _launch_rank() -> int:
    # torchrun and accelerate set RANK for each process of a launch; a plain run has none.
    try:
        return int(os.environ.get("RANK", "0") or 0)
    except ValueError:
        return 0


def _holder(path: Path) -> str:
    try:
        pid, _, what = path.read_text(encoding="utf-8").partition("\n")
    except OSError:
        return "PID unknown"
    pid = pid.strip()
    return f"PID {pid}, {what.strip()}" if pid and what.strip() else f"PID {pid or 'unknown'}"


@contextmanager
def output_lock(out: str | Path, what: str) -> Iterator[None]:
    """Hold the exclusive lock of output folder ``out`` (made if missing) for the ``with`` block, or
    raise :class:`OutputBusyError` naming the live holder's PID at once."""
    try:
        import fcntl
    except ImportError:  # not POSIX
        yield
        return
    if _launch_rank() != 0:
        yield
        return
    out = Path(os.path.expanduser(str(out)))
    path = (out / LOCK_FILE).resolve()
    with _HELD_LOCK:
        if path in _HELD:
            _HELD[path] += 1
            nested = True
        else:
            nested = False
    if nested:
        try:
            yield
        finally:
            with _HELD_LOCK:
                _HELD[path] -= 1
        return
    made = [p for p in (out, *out.parents) if not p.exists()]  # the folders this lock creates, deepest first
    out.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise OutputBusyError(f"{out}: another lmcot run ({_holder(path)}) is writing this folder; wait for it to "
                                  "finish or choose another --out") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        # The holder released and removed the file between our open and our lock: lock the new one.
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n{what}\n".encode())
        with _HELD_LOCK:
            _HELD[path] = 1
        yield
    finally:
        with _HELD_LOCK:
            _HELD.pop(path, None)
        # Removed while still held, so no other process can lock this inode and believe it holds the lock.
        try:
            os.unlink(path)
        except OSError:
            pass
        os.close(fd)
        for folder in made:  # a run that stopped before writing anything leaves no empty folder behind
            try:
                folder.rmdir()
            except OSError:  # not empty: the run wrote something
                break

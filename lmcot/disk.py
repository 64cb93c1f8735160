"""A full disk or a file-size limit, recognised in whatever form a library reports it.

    error = disk_full_error(exc, {"--out": out, "cache_dir": cfg.cache_dir})
    if error is not None: raise error from exc   # one line naming the path, exit 2

Python says ``[Errno 28] No space left on device`` (or ``[Errno 27] File too large`` under
``ulimit -f``) with no path when a write fails; SQLite (DSPy's reply cache) says ``database or disk
is full`` or ``disk I/O error``; torch's checkpoint writer says ``unexpected pos``; safetensors wraps
the OS error in its own exception. None of them is a bug in lmcot, and none names what filled up.
Nothing is half-written when they happen: lmcot's own files are written aside and renamed
(``lmcot.jsonl``), models into ``.tmp`` folders, and SQLite rolls the transaction back.
"""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path

from lmcot.errors import UserError

_FULL_ERRNOS = {errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)}
_SQLITE_FULL = ("database or disk is full", "disk i/o error")
# torch.save's zip writer and safetensors report the OS error inside their own message.
_LIBRARY_FULL = ("unexpected pos", "file write failed", "os error 28", "os error 27", "no space left",
                 "file too large")


class DiskFullError(UserError, OSError):
    """No room to write (disk full, quota, ``ulimit -f``); the message names the path."""


def _reason(exc: BaseException) -> tuple[str, str, BaseException] | None:
    """(kind, reason, the exception that says so) when ``exc`` or a cause says the disk is full: kind
    is ``os``, ``sqlite`` or ``library``."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        text = " ".join(str(exc).split())
        if isinstance(exc, OSError) and exc.errno in _FULL_ERRNOS:
            return "os", exc.strerror or text, exc
        if isinstance(exc, sqlite3.OperationalError) and text.lower() in _SQLITE_FULL:
            return "sqlite", text, exc
        if type(exc).__name__ in ("SafetensorError", "RuntimeError") and any(s in text.lower() for s in _LIBRARY_FULL):
            return "library", text[:160], exc
        exc = exc.__cause__ or exc.__context__
    return None


def disk_full_error(exc: BaseException, places: dict[str, str | Path | None]) -> DiskFullError | None:
    """A one-line :class:`DiskFullError` for ``exc`` when it means the disk is full, else None.
    ``places`` are the run's writable places by option or key (``--out``, ``cache_dir``): the path
    named is the failing file when the error knows it, the cache for SQLite, else those places."""
    found = _reason(exc)
    if found is None:
        return None
    kind, reason, cause = found
    filename = getattr(cause, "filename", None) or getattr(exc, "filename", None)
    known = {k: str(Path(str(v)).expanduser()) for k, v in places.items() if v}
    if filename:
        where = str(filename)
    elif kind == "sqlite" and "cache_dir" in known:
        where = f"{known['cache_dir']} (cache_dir: the reply cache)"
    elif known:
        where = " or ".join(f"{v} ({k})" for k, v in known.items())
    else:
        where = "the output or cache folder"
    return DiskFullError(f"{where}: cannot write ({reason}): the disk is full or a file-size limit (ulimit -f) was "
                         "reached; free some space and rerun (finished work and cached calls are kept)")

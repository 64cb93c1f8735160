"""Crash-safe files: whole-file writes are atomic, JSONL appends are flushed line by line, and a
reader tolerates the torn last line a killed process can leave."""

from __future__ import annotations

import json
import os
import tempfile
import threading
from pathlib import Path
from typing import Any, Iterable, Iterator

from lmcot.errors import UserError


class JsonlError(UserError, ValueError):
    """A JSONL file with a line that is not JSON (the message names the file and line)."""

_append_lock = threading.Lock()


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write to a temporary file in the same folder and rename: readers see the old or the new
    file, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and not exc.filename:
            exc.filename = str(path)  # a failed write (disk full) names no file by itself
        raise


def write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def append_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> None:
    """Append rows, one ``write`` + flush + fsync per row, under a lock (safe from many threads)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with _append_lock, path.open("a", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
                f.flush()
                os.fsync(f.fileno())
    except OSError as exc:
        if not exc.filename:
            exc.filename = str(path)  # a failed write (disk full) names no file; a torn line is skipped on read
        raise


def parse_jsonl(data: str | bytes) -> Iterator[tuple[int, Any, str | None]]:
    """The one JSONL parser: ``(line number, value, None)`` for each non-blank line, or
    ``(line number, None, reason)`` (invalid JSON; with bytes, a line that is not UTF-8); callers
    decide whether a bad line stops them. Bytes are decoded line by line, so the bad line is named.
    Splits on "\n" only (not ``splitlines``): U+2028 may appear raw inside a JSON string."""
    for lineno, line in enumerate(data.split(b"\n" if isinstance(data, bytes) else "\n"), start=1):
        if isinstance(line, bytes):
            try:
                line = line.decode("utf-8")
            except UnicodeDecodeError:
                yield lineno, None, "not UTF-8 text; save the file as UTF-8"
                continue
        if not line.strip():
            continue
        try:
            yield lineno, json.loads(line), None
        except json.JSONDecodeError as exc:
            yield lineno, None, f"invalid JSON ({exc.msg})"


def read_jsonl(path: str | Path, *, repair: bool = False) -> Iterator[dict[str, Any]]:
    """Rows of a JSONL file. A last line without its newline is a torn write from a crash: it is
    skipped, and with ``repair=True`` cut off the file so that later appends start clean."""
    path = Path(path)
    if not path.exists():
        return
    data = path.read_bytes()
    complete, _, torn = data.rpartition(b"\n")
    if torn and repair:
        with path.open("r+b") as f:
            f.truncate(len(complete) + (1 if complete else 0))
    for lineno, value, error in parse_jsonl(complete):
        if error:
            raise JsonlError(f"{path}: line {lineno}: {error}")
        yield value

"""Small on-disk memos that let a cached rerun skip loading the small LM.

A rerun whose LM calls are all in DSPy's cache still needed two things from the small LM: its weights'
fingerprint (it names the LM, so it is part of every cache key) and its tokenizer (to truncate every
context). Both are pure functions of the checkpoint's files, so they are remembered here, keyed on the
files' names, sizes and modification times: an edited or retrained checkpoint gets a new key.

    key = folder_key("runs/q/small_lm", "cpu", "auto")      # None for a hub id (no local files)
    fingerprint = remembered_text("fingerprints", key)      # None: compute it, then remember_text(...)
    memo = truncation_memo(folder_key("runs/q/small_lm"), max_context_tokens=400)  # that tokenizer's cuts
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path
from typing import Any

from lmcot.jsonl import atomic_write_text

_memo_dir: Path | None = None


def set_memo_dir(path: str | Path | None) -> None:
    """Where memos live (``lms.configure_cache`` sets ``<cache_dir>/memo``); None turns them off."""
    global _memo_dir
    _memo_dir = Path(path) if path is not None else None


def memo_dir() -> Path | None:
    return _memo_dir


def folder_key(model: str, *extra: Any) -> str | None:
    """A key for the checkpoint at ``model`` (a folder, or a file inside one): the names, sizes and
    modification times of the files in that folder, plus ``extra``. None when ``model`` is not local."""
    path = Path(model)
    folder = path if path.is_dir() else path.parent if path.is_file() else None
    if folder is None:
        return None
    h = hashlib.sha256(str(folder.resolve()).encode())
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if entry.is_file():
            st = entry.stat()
            h.update(f"{entry.name}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
    h.update(json.dumps([str(x) for x in extra]).encode())
    return h.hexdigest()[:24]


def memo_key(model: str, *extra: Any) -> str | None:
    """:func:`folder_key` when memos are on (a memo folder is set), else None: nothing remembered."""
    return folder_key(model, *extra) if _memo_dir is not None else None


def remembered_text(kind: str, key: str | None) -> str | None:
    """The text remembered under ``kind/key`` (a weights fingerprint, say), or None: no key, memos off,
    nothing remembered yet, or a file that cannot be read (then it is computed again, never trusted)."""
    if key is None or _memo_dir is None:
        return None
    try:
        return (_memo_dir / kind / key).read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def remember_text(kind: str, key: str | None, text: str) -> None:
    """Remember ``text`` under ``kind/key``, written atomically (a crash leaves the old memo or none)."""
    if key is not None and _memo_dir is not None:
        atomic_write_text(_memo_dir / kind / key, text)


def truncation_memo(tokenizer_key: str | None, max_context_tokens: int | None) -> JsonMemo | None:
    """The remembered context cuts for one tokenizer (``tokenizer_key``: :func:`folder_key` of its files),
    or None when there is nothing to remember (no budget, a tokenizer not on disk, memos off)."""
    if max_context_tokens is None or tokenizer_key is None or _memo_dir is None:
        return None
    return JsonMemo(_memo_dir / "truncation" / f"{tokenizer_key}.json")


class JsonMemo:
    """A JSON dict in one file: read once, written back atomically by ``save`` when it changed."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._dirty = False
        try:
            self._data: dict[str, Any] = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            self._data = {}  # missing or torn: recomputed, never trusted

    def __contains__(self, key: str) -> bool:
        return key in self._data

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __setitem__(self, key: str, value: Any) -> None:
        with self._lock:
            if self._data.get(key) != value:
                self._data[key], self._dirty = value, True

    def save(self) -> None:
        with self._lock:
            if not self._dirty:
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.path, json.dumps(self._data))
            self._dirty = False

"""The on-disk tier of lmcot's reply cache: one JSON row per reply in a SQLite file.

    store = ReplyStore(Path("~/.cache/lmcot/replies").expanduser())
    store.set(key, response)          # written (and committed) as the reply arrives
    store.get(key)                    # the response rebuilt from its JSON row, or None

Why not DSPy's disk cache: it is diskcache + pickle, and unpickling runs whatever code the file
names, so a cache folder that came from someone else (a shared program folder, a copied run) could run
code on load. A row here is JSON text, rebuilt only into an allow-list of classes (plain JSON; litellm's
``ModelResponse`` / ``TextCompletionResponse``), so reading a hostile file can give a wrong reply at
worst, never run code. Nothing here imports ``pickle``.

Stdlib ``sqlite3``, in WAL mode: one transaction per reply, so a crash (SIGKILL included) loses only
the calls in flight; ``synchronous=NORMAL`` is durable against a process crash (an OS crash may lose
the last few replies, which are then paid for again). Many threads share one connection behind a
lock; several processes share the file through SQLite's own locking. A row that cannot be read back
(damaged, or written by a newer format) is a miss: it is deleted and the call is made again.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from lmcot.errors import UserError

log = logging.getLogger(__name__)

FILE_NAME = "replies.sqlite3"
FORMAT = "lmcot-replies/1"
# Classes a row may be rebuilt into (module, name): what DSPy's LM caches for a litellm call. Anything
# else that is not plain JSON stays in the memory tier only (logged once per type).
REBUILDABLE = {
    "litellm.types.utils.ModelResponse": ("litellm.types.utils", "ModelResponse"),
    "litellm.types.utils.TextCompletionResponse": ("litellm.types.utils", "TextCompletionResponse"),
}
_JSON = "json"


class ReplyStoreError(UserError, OSError):
    """The cache file cannot be opened or is not a reply cache; the message names the path."""


def _jsonable(value: Any) -> Any:
    """``value`` if it survives a JSON round trip unchanged in kind, else None (dropped)."""
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError):
        return None


def encode(value: Any) -> str | None:
    """A JSON row for ``value``, or None when it is of a kind this store does not rebuild."""
    cls = type(value)
    tag = f"{cls.__module__}.{cls.__qualname__}"
    if tag in REBUILDABLE:
        from lmcot._dspy_reaches import response_extras

        hidden = response_extras(value) or {}
        # litellm keeps the call's cost in its extras ("response_cost"): lmcot.usage reads it from
        # cache hits too. What does not serialise (a client object, say) is dropped.
        row = {"t": tag, "v": value.model_dump(mode="json"),
               "h": {k: v for k, v in ((k, _jsonable(v)) for k, v in hidden.items()) if v is not None}}
    else:
        row = {"t": _JSON, "v": value}
    try:
        return json.dumps(row, ensure_ascii=False)
    except (TypeError, ValueError):
        return None


def decode(text: str) -> Any:
    """The value a row holds; raises ValueError for anything that is not a row this store wrote."""
    row = json.loads(text)
    if not isinstance(row, dict) or "t" not in row or "v" not in row:
        raise ValueError("not a reply row")
    if row["t"] == _JSON:
        return row["v"]
    if row["t"] not in REBUILDABLE or not isinstance(row["v"], dict):
        raise ValueError(f"unknown reply kind {str(row['t'])[:80]!r}")
    module, name = REBUILDABLE[row["t"]]
    cls = getattr(importlib.import_module(module), name)
    value = cls(**row["v"])
    if isinstance(row.get("h"), dict):
        from lmcot._dspy_reaches import set_response_extras

        set_response_extras(value, row["h"])
    return value


class ReplyStore:
    """``get`` / ``set`` / ``delete`` / ``in`` over the rows of ``folder/replies.sqlite3``."""

    def __init__(self, folder: str | Path):
        self.folder = Path(os.path.expanduser(str(folder)))
        self.path = self.folder / FILE_NAME
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pid: int | None = None
        self._warned: set[str] = set()
        with self._lock:
            self._connection()  # a file that is not a reply cache fails here, before any call

    def _connection(self) -> sqlite3.Connection:
        """The open connection (reopened in a forked child: a connection must not cross a fork)."""
        if self._conn is not None and self._pid == os.getpid():
            return self._conn
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=30, check_same_thread=False, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)")
            conn.execute("CREATE TABLE IF NOT EXISTS replies (key TEXT PRIMARY KEY, value TEXT NOT NULL, "
                         "written REAL NOT NULL)")
            conn.execute("INSERT OR IGNORE INTO meta VALUES ('format', ?)", (FORMAT,))
            (fmt,) = conn.execute("SELECT value FROM meta WHERE name = 'format'").fetchone()
        except sqlite3.DatabaseError as exc:
            raise ReplyStoreError(f"{self.path}: not a usable reply cache ({exc}); delete it or choose another "
                                  "cache_dir") from None
        if fmt != FORMAT:
            conn.close()
            raise ReplyStoreError(f"{self.path}: reply cache format {fmt!r}, this lmcot reads {FORMAT!r}; "
                                  "choose another cache_dir")
        self._conn, self._pid = conn, os.getpid()
        return conn

    def _warn_once(self, what: str, message: str, *args: Any) -> None:
        if what not in self._warned:
            self._warned.add(what)
            log.warning(message, *args)

    def get(self, key: str) -> Any:
        with self._lock:
            try:
                found = self._connection().execute("SELECT value FROM replies WHERE key = ?", (key,)).fetchone()
            except sqlite3.Error as exc:
                self._warn_once("read", "%s: cannot read the reply cache (%s); calls are made again", self.path, exc)
                return None
        if found is None:
            return None
        try:
            return decode(found[0])
        except Exception as exc:  # noqa: BLE001 - a damaged or foreign row is a miss, never a crash
            log.debug("%s: unreadable row %s (%s); dropped", self.path, key, exc)
            self.delete(key)
            return None

    def set(self, key: str, value: Any) -> bool:
        """Write ``value`` under ``key``; False when it is of a kind kept in memory only."""
        text = encode(value)
        if text is None:
            self._warn_once(type(value).__qualname__, "%s replies are cached in memory only (not plain JSON, not "
                            "a known litellm response)", type(value).__qualname__)
            return False
        with self._lock:
            try:
                self._connection().execute("INSERT OR REPLACE INTO replies VALUES (?, ?, ?)", (key, text, time.time()))
            except sqlite3.Error as exc:
                self._warn_once("write", "%s: cannot write the reply cache (%s); replies are not being saved",
                                self.path, exc)
                return False
        return True

    def delete(self, key: str) -> None:
        with self._lock:
            try:
                self._connection().execute("DELETE FROM replies WHERE key = ?", (key,))
            except sqlite3.Error as exc:
                self._warn_once("write", "%s: cannot write the reply cache (%s)", self.path, exc)

    def __contains__(self, key: str) -> bool:
        with self._lock:
            return self._connection().execute("SELECT 1 FROM replies WHERE key = ?", (key,)).fetchone() is not None

    def __len__(self) -> int:
        with self._lock:
            return self._connection().execute("SELECT COUNT(*) FROM replies").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None

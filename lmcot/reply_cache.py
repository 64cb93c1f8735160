"""lmcot's reply cache: DSPy's cache interface over JSON rows, and replies that fail to parse never kept.

    dspy.cache = ReplyCache("~/.cache/lmcot/replies")     # what lmcot.configure_cache installs
    value = parsed_reply(lambda: predictor(**inputs), what="answer")

:class:`ReplyCache` is a ``dspy.clients.cache.Cache`` (DSPy's cache tutorial: assign an instance to
``dspy.cache``) with DSPy's two tiers: an in-process LRU of response objects, then disk. The disk
tier is :class:`lmcot.reply_store.ReplyStore`, JSON rows in SQLite written as each reply arrives,
instead of DSPy's pickles: a cache folder from elsewhere can never run code (``lmcot.reply_store``).
Keys are DSPy's own (``Cache.cache_key``; the endpoint and the key are not part of them), and a hit
comes back as from DSPy's cache: usage emptied and ``cache_hit`` set (``lmcot.usage`` counts it so).

DSPy caches every 200 response as it arrives, before the adapter parses it; a garbled reply (a
server that truncates or mangles output, a model that ignores the format) would then be replayed
by every rerun, even against a healthy server, at no cost and with the same failure. DSPy 3.4 has
no hook for "cache only what parsed" (``rollout_id`` gives a fresh key but leaves the bad entry in
place), so :func:`parsed_reply` runs the call inside a *staging scope*: while it runs, ``put`` holds
the new entries aside (per call, via a ContextVar, so concurrent calls do not mix). When the call
returns, they are written; when it raises (``AdapterParseError`` and any other error) or ``reject``
says the result is unusable, they are dropped, and cache entries the call *read* are evicted too (a
bad reply cached by an older run). Within a call that succeeds, a reply whose parse failed is dropped
as well: DSPy's ChatAdapter answers its own parse failure by asking again in JSON (a second call), and
the first, garbled reply must not stay behind (a DSPy callback, ``on_adapter_parse_end``, marks it).
The call is retried at most ``attempts`` times in all; a retry sends a new request because nothing bad
was kept. Ctrl-C keeps the staged entries: a paid reply is not thrown away unless it is known to be bad.

The cache also keeps secrets out of its file: litellm records the ``api_base`` it called in each
response (``_hidden_params``), URL credentials included; :func:`scrub` redacts it before an entry
is written.
"""

from __future__ import annotations

import contextvars
import copy
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from dspy.clients.cache import Cache
from dspy.utils.callback import BaseCallback

from lmcot.reply_store import ReplyStore

log = logging.getLogger(__name__)

T = TypeVar("T")
PARSE_ATTEMPTS = 3  # first try + 2 retries of a reply that does not parse

_SCOPE: contextvars.ContextVar[_Scope | None] = contextvars.ContextVar("lmcot_reply_scope", default=None)
# The thread whose LM call this is: a call run on a helper thread (HttpLM's bounded tries) writes the
# cache there while the adapter parses its reply on the caller's thread.
_CALLER: contextvars.ContextVar[int | None] = contextvars.ContextVar("lmcot_reply_caller", default=None)


def _caller() -> int:
    return _CALLER.get() or threading.get_ident()


def on_behalf_of_caller(call: Callable[[], T]) -> Callable[[], T]:
    """``call`` wrapped to run on a helper thread in a copy of the caller's context, its cache entries
    counted as the caller's (build it on the caller's thread)."""
    context, caller = contextvars.copy_context(), _caller()

    def run() -> T:
        _CALLER.set(caller)
        return call()

    return lambda: context.run(run)


_WARNED_FOREIGN_CACHE = threading.Event()


class UnusableReply(Exception):
    """A reply that arrived but cannot be used (raised by ``parsed_reply`` when ``reject`` says so)."""


class ReplyCache(Cache):
    """``dspy.cache`` for lmcot: DSPy's memory tier, then JSON rows in ``folder/replies.sqlite3``.

    Thread-safe (DSPy calls it from many threads); several processes may share the folder."""

    def __init__(self, folder: str | Path, *, enable_memory_cache: bool = True, memory_max_entries: int = 1_000_000):
        super().__init__(enable_disk_cache=False, enable_memory_cache=enable_memory_cache, disk_cache_dir=None,
                         memory_max_entries=memory_max_entries)
        self.store = ReplyStore(folder)
        # The attributes DSPy's own Cache has, pointing at the JSON store (``key in cache`` reads both).
        self.enable_disk_cache, self.disk_cache_dir, self.disk_cache = True, str(folder), self.store
        self._memory_lock = threading.RLock()

    def get(self, request: dict[str, Any], ignored_args_for_cache_key: list[str] | None = None) -> Any:
        try:
            key = self.cache_key(request, ignored_args_for_cache_key)
        except Exception:  # noqa: BLE001 - as DSPy: a request it cannot key is simply not cached
            return None
        value = None
        if self.enable_memory_cache:
            with self._memory_lock:
                value = self.memory_cache.get(key)
            value = copy.deepcopy(value)
        if value is None:
            value = self.store.get(key)
            if value is None:
                return None
            if self.enable_memory_cache:
                with self._memory_lock:
                    self.memory_cache[key] = copy.deepcopy(value)
        scope = _SCOPE.get()
        if scope is not None:
            scope.read(self, key)
        return _as_hit(value)

    def put(self, request: dict[str, Any], value: Any, ignored_args_for_cache_key: list[str] | None = None,
            enable_memory_cache: bool = True) -> None:
        try:
            key = self.cache_key(request, ignored_args_for_cache_key)
        except Exception:  # noqa: BLE001 - as DSPy
            return
        value = scrub(value)
        scope = _SCOPE.get()
        if scope is not None:
            scope.stage(self, key, value, enable_memory_cache)
        else:
            self.write(key, value, enable_memory_cache)

    def write(self, key: str, value: Any, enable_memory_cache: bool = True) -> None:
        """Store ``value`` under a key of :meth:`cache_key`, in memory and on disk (committed now)."""
        if self.enable_memory_cache and enable_memory_cache:
            with self._memory_lock:
                self.memory_cache[key] = value
        self.store.set(key, value)

    def evict(self, key: str) -> None:
        with self._memory_lock:
            self.memory_cache.pop(key, None)
        self.store.delete(key)

    # DSPy's own memory-tier methods, under this cache's lock too (the tier is not thread-safe).
    def save_memory_cache(self, filepath: str) -> None:
        with self._memory_lock:
            super().save_memory_cache(filepath)

    def load_memory_cache(self, filepath: str, allow_pickle: bool = False) -> None:
        with self._memory_lock:
            super().load_memory_cache(filepath, allow_pickle=allow_pickle)

    def reset_memory_cache(self) -> None:
        with self._memory_lock:
            self.memory_cache.clear()


def _as_hit(value: Any) -> Any:
    """What DSPy's Cache returns for a hit: no usage (no call was made), ``cache_hit`` marked."""
    if hasattr(value, "usage"):
        value.usage = {}
        object.__setattr__(value, "cache_hit", True)  # strict pydantic models refuse undeclared fields
    return value


class _Scope:
    """The entries one ``parsed_reply`` attempt wrote and read, kept aside until it is known to be good."""

    def __init__(self) -> None:
        self.puts: list[tuple[ReplyCache, str, Any, bool]] = []
        self.reads: list[tuple[ReplyCache, str]] = []
        self.bad: set[tuple[str, int]] = set()
        self.last: dict[int, tuple[str, int]] = {}  # per thread: the entry its latest LM call wrote or read
        self.lock = threading.Lock()

    def stage(self, cache: ReplyCache, key: str, value: Any, memory: bool) -> None:
        with self.lock:
            self.puts.append((cache, key, value, memory))
            self.last[_caller()] = ("put", len(self.puts) - 1)

    def read(self, cache: ReplyCache, key: str) -> None:
        with self.lock:
            self.reads.append((cache, key))
            self.last[_caller()] = ("read", len(self.reads) - 1)

    def parse_failed(self) -> None:
        """The reply this thread's latest LM call gave did not parse: never keep it."""
        with self.lock:
            latest = self.last.get(_caller())
            if latest is not None:
                self.bad.add(latest)

    def commit(self) -> None:
        for i, (cache, key, value, memory) in enumerate(self.puts):
            if ("put", i) not in self.bad:
                cache.write(key, value, memory)
        for i, (cache, key) in enumerate(self.reads):
            if ("read", i) in self.bad:
                cache.evict(key)

    def discard(self) -> None:
        for cache, key in self.reads:
            cache.evict(key)


class _ParseWatch(BaseCallback):
    """Tells the current scope when an adapter's parse fails (DSPy's public callback hook)."""

    def on_adapter_parse_end(self, call_id: str, outputs: Any, exception: BaseException | None = None) -> None:
        scope = _SCOPE.get()
        if exception is not None and scope is not None:
            scope.parse_failed()


_PARSE_WATCH = _ParseWatch()


def scrub(value: Any) -> Any:
    """Redact the endpoint a response records (litellm's ``_hidden_params``, ``api_base`` keys of a
    dict record) in place; the reply itself is left as it came."""
    from lmcot._dspy_reaches import response_extras
    from lmcot.redact import redact, redact_tree

    hidden = response_extras(value)
    if hidden is not None:
        for key, item in list(hidden.items()):
            hidden[key] = redact_tree(item) if isinstance(item, (str, dict, list)) else item
    if isinstance(value, dict):
        for key in ("api_base", "base_url"):
            if isinstance(value.get(key), str):
                value[key] = redact(value[key])
    return value


def is_parse_failure(exc: BaseException) -> bool:
    from dspy.utils.exceptions import AdapterParseError

    return isinstance(exc, (AdapterParseError, UnusableReply))


def attempts_for(lm: Any, temperature: float | None = None) -> int:
    """How many times to ask ``lm`` for a reply that parses: once for an in-process model decoding
    greedily or with a seed (it writes the same reply again: a retry is a whole generate for nothing),
    else ``PARSE_ATTEMPTS``. ``temperature``
    is the call's own when it overrides the LM's. An API model at temperature 0 is not bitwise
    deterministic, so it is asked again."""
    from lmcot.hf_engine import hf_engine_of

    if lm is None or hf_engine_of(lm) is None:
        return PARSE_ATTEMPTS
    kwargs = getattr(lm, "kwargs", None) or {}
    t = temperature if temperature is not None else kwargs.get("temperature")
    # A seeded sampled request is also replayed exactly (the engine reseeds torch for it).
    return 1 if not t or kwargs.get("seed") is not None else PARSE_ATTEMPTS


def _check_installed() -> None:
    import dspy

    if not isinstance(dspy.cache, ReplyCache) and not _WARNED_FOREIGN_CACHE.is_set():
        _WARNED_FOREIGN_CACHE.set()
        log.warning("dspy.cache is %s, not lmcot's ReplyCache (lmcot.configure_cache installs it): a reply that "
                    "fails to parse may stay cached there", type(dspy.cache).__name__)


def parsed_reply(call: Callable[[], T], *, reject: Callable[[T], bool] | None = None, attempts: int = PARSE_ATTEMPTS,
                 what: str = "reply") -> T:
    """``call()``, with replies that fail to parse (``AdapterParseError``) or that ``reject`` refuses
    kept out of the cache and retried; after ``attempts`` tries the last error is raised
    (``UnusableReply`` for a rejected result). Other errors are raised at once (DSPy and the callers
    have their own retries for transport errors), their staged entries dropped too."""
    import dspy

    _check_installed()
    callbacks = [*(dspy.settings.get("callbacks", None) or []), _PARSE_WATCH]
    last: BaseException | None = None
    for attempt in range(max(1, attempts)):
        scope = _Scope()
        token = _SCOPE.set(scope)
        try:
            with dspy.context(callbacks=callbacks):
                result = call()
        except Exception as exc:
            _SCOPE.reset(token)
            scope.discard()
            if not is_parse_failure(exc):
                raise
            last = exc
        except BaseException:  # Ctrl-C: keep what was paid for
            _SCOPE.reset(token)
            scope.commit()
            raise
        else:
            _SCOPE.reset(token)
            if reject is not None and reject(result):
                scope.discard()
                last = UnusableReply(f"unusable {what}: {str(result)[:200]!r}")
            else:
                scope.commit()
                return result
        if attempt + 1 < attempts:
            log.warning("%s could not be parsed (%s); not cached, asking again (%d/%d)", what,
                        type(last).__name__, attempt + 2, attempts)
    assert last is not None
    raise last

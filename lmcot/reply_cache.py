"""A reply that fails to parse never stays in DSPy's cache.

DSPy caches every 200 response as it arrives, before the adapter parses it; a garbled reply (a
server that truncates or mangles output, a model that ignores the format) would then be replayed
by every rerun, even against a healthy server, at no cost and with the same failure. DSPy 3.4 has
no hook for "cache only what parsed" (``rollout_id`` gives a fresh key but leaves the bad entry in
place), so this module adds one, hand-written and small:

    value = parsed_reply(lambda: predictor(**inputs), what="answer")

runs the call inside a *staging scope*: while it runs, ``dspy.cache.put`` holds the new entries
aside (per call, via a ContextVar, so concurrent calls do not mix). When the call returns, they are
written as usual; when it raises (``AdapterParseError`` and any other error) or ``reject`` says the
result is unusable, they are dropped, and cache entries the call *read* are evicted too (a bad reply
cached by an older run). The call is then retried, at most ``attempts`` times in all; a retry sends
a new request because nothing bad was kept. Ctrl-C keeps the staged entries: a paid reply is not
thrown away unless it is known to be bad.

The same hook keeps secrets out of the cache files: litellm records the ``api_base`` it called in
each response (``_hidden_params``), URL credentials included; :func:`scrub` redacts it before an
entry is written.
"""

from __future__ import annotations

import contextvars
import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
PARSE_ATTEMPTS = 3  # first try + 2 retries of a reply that does not parse

_SCOPE: contextvars.ContextVar[_Scope | None] = contextvars.ContextVar("lmcot_reply_scope", default=None)
_INSTALL_LOCK = threading.Lock()


class UnusableReply(Exception):
    """A reply that arrived but cannot be used (raised by ``parsed_reply`` when ``reject`` says so)."""


class _Scope:
    def __init__(self) -> None:
        self.puts: list[tuple[Any, dict, Any, Any, bool]] = []
        self.hits: list[tuple[Any, dict, Any]] = []
        self.lock = threading.Lock()

    def commit(self) -> None:
        for cache, request, value, ignored, memory in self.puts:
            _ORIGINAL["put"](cache, request, value, ignored, memory)

    def evict_hits(self) -> None:
        for cache, request, ignored in self.hits:
            try:
                key = cache.cache_key(request, ignored)
            except Exception:  # noqa: BLE001 - nothing to evict if DSPy could not key it either
                continue
            with cache._lock:
                getattr(cache.memory_cache, "pop", lambda *a: None)(key, None)
            disk = cache.disk_cache
            if hasattr(disk, "delete"):
                disk.delete(key)
            elif isinstance(disk, dict):
                disk.pop(key, None)


_ORIGINAL: dict[str, Callable] = {}


def scrub(value: Any) -> Any:
    """Redact the endpoint a response records (litellm's ``_hidden_params``, ``api_base`` keys of a
    dict record) in place; the reply itself is left as it came."""
    from lmcot.redact import redact, redact_tree

    hidden = getattr(value, "_hidden_params", None)
    if isinstance(hidden, dict):
        for key, item in list(hidden.items()):
            hidden[key] = redact_tree(item) if isinstance(item, (str, dict, list)) else item
    if isinstance(value, dict):
        for key in ("api_base", "base_url"):
            if isinstance(value.get(key), str):
                value[key] = redact(value[key])
    return value


def install() -> None:
    """Route ``dspy.clients.cache.Cache.get/put`` through the staging scope (idempotent). Outside a
    scope they behave exactly as DSPy's own."""
    from dspy.clients.cache import Cache

    with _INSTALL_LOCK:
        if _ORIGINAL:
            return
        _ORIGINAL["put"], _ORIGINAL["get"] = Cache.put, Cache.get

        def put(self, request, value, ignored_args_for_cache_key=None, enable_memory_cache=True):
            value = scrub(value)
            scope = _SCOPE.get()
            if scope is None:
                return _ORIGINAL["put"](self, request, value, ignored_args_for_cache_key, enable_memory_cache)
            import copy

            with scope.lock:
                scope.puts.append((self, copy.deepcopy(request), value, ignored_args_for_cache_key,
                                   enable_memory_cache))

        def get(self, request, ignored_args_for_cache_key=None):
            result = _ORIGINAL["get"](self, request, ignored_args_for_cache_key)
            scope = _SCOPE.get()
            if scope is not None and result is not None:
                import copy

                with scope.lock:
                    scope.hits.append((self, copy.deepcopy(request), ignored_args_for_cache_key))
            return result

        Cache.put, Cache.get = put, get


def is_parse_failure(exc: BaseException) -> bool:
    from dspy.utils.exceptions import AdapterParseError

    return isinstance(exc, (AdapterParseError, UnusableReply))


def attempts_for(lm: Any, temperature: float | None = None) -> int:
    """How many times to ask ``lm`` for a reply that parses: once for an in-process model decoding
    greedily or with a seed (it writes the same reply again: each retry of the 135M reader of
    configs/real_reader.yaml cost ~10 s on CPU for nothing), else ``PARSE_ATTEMPTS``. ``temperature``
    is the call's own when it overrides the LM's. An API model at temperature 0 is not bitwise
    deterministic, so it is asked again."""
    from lmcot.hf_engine import hf_engine_of

    if lm is None or hf_engine_of(lm) is None:
        return PARSE_ATTEMPTS
    kwargs = getattr(lm, "kwargs", None) or {}
    t = temperature if temperature is not None else kwargs.get("temperature")
    # A seeded sampled request is also replayed exactly (the engine reseeds torch for it).
    return 1 if not t or kwargs.get("seed") is not None else PARSE_ATTEMPTS


def parsed_reply(call: Callable[[], T], *, reject: Callable[[T], bool] | None = None, attempts: int = PARSE_ATTEMPTS,
                 what: str = "reply") -> T:
    """``call()``, with replies that fail to parse (``AdapterParseError``) or that ``reject`` refuses
    kept out of the cache and retried; after ``attempts`` tries the last error is raised
    (``UnusableReply`` for a rejected result). Other errors are raised at once (DSPy and the callers
    have their own retries for transport errors), their staged entries dropped too."""
    install()
    last: BaseException | None = None
    for attempt in range(max(1, attempts)):
        scope = _Scope()
        token = _SCOPE.set(scope)
        try:
            result = call()
        except Exception as exc:
            _SCOPE.reset(token)
            scope.evict_hits()
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
                scope.evict_hits()
                last = UnusableReply(f"unusable {what}: {str(result)[:200]!r}")
            else:
                scope.commit()
                return result
        if attempt + 1 < attempts:
            log.warning("%s could not be parsed (%s); not cached, asking again (%d/%d)", what,
                        type(last).__name__, attempt + 2, attempts)
    assert last is not None
    raise last

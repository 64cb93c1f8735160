"""A model behind an HTTP API (litellm) whose calls end within a bound and whose unreachable host fails at once.

    lm = HttpLM("openai/gpt-4o-mini", role="large_lm", shown="(provider default)", total_timeout=60,
                retries=5, timeout=120, temperature=0.0, max_tokens=512)

``lmcot.lms.build_lm`` builds one for every ``backend: litellm`` model. It is a ``dspy.LM`` (litellm
engine, DSPy's cache and history) with two things DSPy 3.4 cannot be told:

* **A total bound** (``ROLE.total_timeout``, one minute by default): DSPy retries a failed call
  ``num_retries`` times with backoff, each try waiting up to ``timeout``; a server that answers the
  start-up probe but hangs on completions cost (5 + 1) x 120 s plus backoff, 13 minutes a question.
  Here every try runs in a worker thread that is abandoned at the deadline (litellm's own ``timeout``
  still ends it later), and no try or wait starts past it. ``timeout`` stays the fixed per-try
  setting, so DSPy's cache key (which contains it) is the same as without the bound.
* **What is not transient**: litellm reports a host name that does not resolve and a refused
  connection as a 500 "Connection error", which DSPy retries with backoff (30-40 s by default) before
  anyone hears of it. Found in the exception's causes (``socket.gaierror``, ``ConnectionRefusedError``),
  they fail at once. 429, 5xx and timeouts are retried as DSPy would (``is_retryable_lm_error``, its
  backoff schedule and ``retry_after`` hints).

So the retry loop lives here and DSPy's own gets ``num_retries=0``: one layer retries. Hand-written
because neither DSPy nor litellm has a deadline over all tries or a hook to classify a failure.
Both failures raise :class:`lmcot.errors.EndpointError`, one line naming the config keys.
"""

from __future__ import annotations

import errno
import logging
import math
import socket
import threading
import time
from typing import Any, Callable

import dspy

from lmcot.errors import EndpointError
from lmcot.reply_cache import on_behalf_of_caller

log = logging.getLogger(__name__)

# getaddrinfo's "try again": a resolver that is briefly unavailable, the one DNS failure worth a retry.
_DNS_TRY_AGAIN = {getattr(socket, "EAI_AGAIN", -3)}


def unreachable_reason(exc: BaseException) -> str | None:
    """Why ``exc`` (or one of its causes) says the host cannot be reached at all: a name that does not
    resolve or a refused connection (``"Name or service not known"``), else None."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, socket.gaierror) and exc.errno not in _DNS_TRY_AGAIN:
            return exc.strerror or str(exc)
        if isinstance(exc, ConnectionRefusedError) or (isinstance(exc, OSError) and exc.errno == errno.ECONNREFUSED):
            return exc.strerror or "Connection refused"
        exc = exc.__cause__ or exc.__context__
    return None


def _backoff(exc: BaseException, attempt: int) -> float:
    """DSPy's schedule: the provider's ``retry_after`` hint, else 1, 2, 4, ... capped at 60 s."""
    hint = getattr(exc, "retry_after", None)
    if isinstance(hint, (int, float)) and not isinstance(hint, bool) and math.isfinite(hint) and hint >= 0:
        return float(hint)
    return float(min(2 ** min(attempt, 6), 60))


class _Expired(Exception):
    """The deadline passed while a try was in flight."""


class HttpLM(dspy.LM):
    """``dspy.LM`` over litellm with a total time bound per call and no retries of an unreachable host."""

    # Injected in tests (a fake clock and sleep); the real ones otherwise.
    _clock: Callable[[], float] = staticmethod(time.monotonic)
    _sleep: Callable[[float], None] = staticmethod(time.sleep)

    def __init__(self, model: str, *, role: str = "lm", shown: str = "", total_timeout: float = 60.0,
                 retries: int | None = None, **kwargs: Any):
        # DSPy's own loop gets no retries (they are counted here); a state saved by dump_state names both.
        dspy_retries = kwargs.pop("num_retries", 0)
        # litellm through DSPy's own engine; an engine object is lmcot.router's (several servers, one
        # litellm Router). A saved state's "litellm" selection rebuilds the default.
        engine = kwargs.pop("engine", None)
        super().__init__(model, engine=engine if engine is not None and not isinstance(engine, str) else "litellm",
                         num_retries=0, **kwargs)
        self.role, self.shown = role, shown
        self.total_timeout, self.retries = float(total_timeout), int(dspy_retries if retries is None else retries)

    def dump_state(self) -> dict[str, Any]:
        # DSPy rebuilds a saved LM as cls(**state): the bound and the role travel with it.
        return {**super().dump_state(), "role": self.role, "shown": self.shown, "total_timeout": self.total_timeout,
                "retries": self.retries}

    def __call__(self, *args: Any, **kwargs: Any):
        return self._bounded(lambda: super(HttpLM, self).__call__(*args, **kwargs))

    async def acall(self, *args: Any, **kwargs: Any):
        # The same bounded, retried call off the event loop (the context is copied), so async callers
        # get the bound too and share cache entries with sync ones.
        import asyncio

        return await asyncio.to_thread(self.__call__, *args, **kwargs)

    # -- the loop -----------------------------------------------------------------------------
    def _bounded(self, call: Callable[[], Any]) -> Any:
        from dspy.utils.exceptions import is_retryable_lm_error

        deadline = self._clock() + self.total_timeout
        tries = 0
        while True:
            tries += 1
            try:
                return self._try(call, deadline - self._clock())
            except _Expired:
                raise self._timed_out(tries) from None
            except Exception as exc:
                reason = unreachable_reason(exc)
                if reason is not None:
                    raise self._unreachable(reason) from exc
                if not is_retryable_lm_error(exc) or tries > self.retries:
                    raise
                wait = _backoff(exc, tries - 1)
                if self._clock() + wait >= deadline:
                    raise self._timed_out(tries) from exc
                log.info("%s call failed (%s); try %d of %d in %.1f s", self.role, type(exc).__name__, tries + 1,
                         self.retries + 1, wait)
                self._sleep(wait)

    def _try(self, call: Callable[[], Any], remaining: float) -> Any:
        """One try, given up after ``remaining`` seconds. A daemon thread, not a pool: an abandoned try
        may hang until litellm's timeout and must neither hold a worker nor delay the process's exit."""
        if remaining <= 0:
            raise _Expired
        box: dict[str, Any] = {}
        # In the caller's context (DSPy's settings, usage tracking, lmcot's reply-cache scope), the
        # cache entry counted as the caller's, whose adapter parses the reply.
        call = on_behalf_of_caller(call)

        def run() -> None:
            try:
                box["value"] = call()
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
                box["error"] = exc

        worker = threading.Thread(target=run, name=f"lmcot-{self.role}-call", daemon=True)
        worker.start()
        worker.join(remaining)
        if worker.is_alive():
            raise _Expired
        if "error" in box:
            raise box["error"]
        return box["value"]

    # -- messages -----------------------------------------------------------------------------
    def _where(self) -> str:
        return f"{self.role}.api_base={self.shown}" if self.shown else f"{self.role}.model={self.model}"

    def _timed_out(self, tries: int) -> EndpointError:
        per_try = self.kwargs.get("timeout")
        each = f"; {self.role}.timeout={per_try:g} s per try" if isinstance(per_try, (int, float)) else ""
        return EndpointError(f"{self._where()}: no reply within {self.role}.total_timeout={self.total_timeout:g} s "
                             f"({tries} tr{'y' if tries == 1 else 'ies'}{each}); is the server hung or overloaded? "
                             f"A slow model writing long replies may need a larger {self.role}.total_timeout")

    def _unreachable(self, reason: str) -> EndpointError:
        what = "is the server running and the host name right?" if self.shown else "is the network up?"
        return EndpointError(f"{self._where()}: cannot connect ({reason}); {what} (not retried: this is not a "
                             "transient failure)")


_WARNED_EXTRA: set[tuple[str, str]] = set()
_WARNED_LOCK = threading.Lock()


def warn_unknown_extra(model: str, extra: dict[str, Any], role: str) -> None:
    """Warn once per model and key about an ``extra`` setting litellm does not know for ``model``: it is
    sent to the server as it is, so a typo (``temprature``) would otherwise pass unnoticed."""
    if not extra:
        return
    import inspect

    import litellm
    from litellm.types.utils import all_litellm_params

    known = set(inspect.signature(litellm.completion).parameters) | set(all_litellm_params)
    # `extra_body` is the OpenAI SDK's own field for server-specific settings; litellm passes it through.
    known.add("extra_body")
    try:
        name, provider, _, _ = litellm.get_llm_provider(model)
        known |= set(litellm.get_supported_openai_params(model=name, custom_llm_provider=provider) or ())
    except Exception:  # noqa: BLE001 - a provider litellm cannot name: the generic parameters only
        pass
    for key in sorted(set(map(str, extra)) - known):
        with _WARNED_LOCK:
            if (model, key) in _WARNED_EXTRA:
                continue
            _WARNED_EXTRA.add((model, key))
        log.warning("%s.extra.%s: not a parameter litellm knows for %s; it is sent to the server as it is "
                    "(fine if the server takes it, e.g. vLLM's repetition_penalty; else check the spelling)",
                    role, key, model)

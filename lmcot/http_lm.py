"""A model behind an HTTP API (litellm) whose calls end within a bound and whose unreachable host fails at once.

    lm = HttpLM("openai/gpt-4o-mini", role="large_lm", shown="", total_timeout=60,
                retries=5, timeout=120, temperature=0.0, max_tokens=512)

:func:`build_http_lm` builds one for every ``backend: litellm`` model (``lmcot.lms.build_lm`` hands it
those). It is a ``dspy.LM`` (litellm engine, DSPy's cache and history) with two things DSPy 3.4 cannot
be told:

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

Several servers of one large LM (vLLM replicas, say) are reached through litellm's Router:

    large_lm:
      model: hosted_vllm/Qwen/Qwen2.5-72B-Instruct
      api_base: [http://gpu1:8000/v1, http://gpu2:8000/v1]     # the same model on each

:func:`build_http_lm` turns a list of ``api_base`` URLs into one
``litellm.Router`` whose deployments are the servers, as the engine of an :class:`HttpLM` (the
total time bound and retries every HTTP model gets). What it does:

- **Spreads calls** over the servers (litellm's ``simple-shuffle``), not hand-written balancing.
- **Rests a failing server.** A server that refuses the connection, times out or answers 5xx/429 is
  put in litellm's cooldown for ``COOLDOWN_S`` seconds (``allowed_fails=0``) and the call fails over at
  once to another server; after the cooldown it is tried again. When every server is resting the
  Router's "no deployments available" arrives as a rate limit, which ``HttpLM`` waits out and asks
  again: no answer is lost while one server lives. Only when every server refuses does the call fail
  at once.
- **Retries in one layer.** The Router only fails over: one HttpLM try sends at most one request per
  server (the Router's ``num_retries`` = servers - 1, the resting of a failed server steering the next
  request elsewhere). ``HttpLM``'s loop owns ``num_retries`` (backoff, ``total_timeout``) as for one
  server, so one call sends at most (``num_retries`` + 1) x servers requests.
- **Keeps DSPy's cache.** DSPy 3.4's ``dspy.LM(engine="litellm")`` calls the module-level
  ``litellm.completion`` itself and takes one ``api_base``: it has no seam for a Router. A custom engine
  is DSPy's seam (``dspy.LM(name, engine=...)``); DSPy keeps its disk cache, history and usage around
  it, ``HttpLM`` its retries. The engine answers DSPy's ordinary (message-list) calls with ``complete_legacy``, sending
  exactly the keyword arguments ``engine="litellm"`` sends (``large_lm.extra`` included: a canonical
  ``dspy.lm15.Request`` cannot carry litellm-only settings such as ``extra_body``), so replies, costs
  and cache entries are those of a single server; typed calls (the judge's) go through ``complete``.
- **Cache key independent of the server.** The URLs, the key and the timeout live in the engine, not
  in the LM's settings, so DSPy's cache key holds the model, the messages and the sampling settings
  only: a rerun against other replicas of the model (any list of URLs) is served from the cache. (A
  run with a single ``api_base`` string keys its calls with ``timeout`` too, as DSPy's litellm engine
  does, so switching between a string and a list does not share entries.)

The start-up probe of every ``api_base`` (nothing is paid before it passes) is ``lmcot.preflight.check_endpoint``.
"""

from __future__ import annotations

import errno
import logging
import math
import socket
import threading
import time
import warnings
from typing import TYPE_CHECKING, Any, Callable

import dspy

from lmcot.engine_base import SharedEngine
from lmcot.errors import EndpointError
from lmcot.reply_cache import on_behalf_of_caller

if TYPE_CHECKING:
    from lmcot.config import LMConfig

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


def client_setup_problem(exc: BaseException) -> str | None:
    """What the OpenAI client refused before sending anything (a missing key: "Missing credentials"),
    found among ``exc``'s causes, or None. litellm wraps it as a 500, which would be retried as
    transient; no retry can mend it. An ``openai.OpenAIError`` that is no ``APIError`` never reached a
    server."""
    try:
        import openai
    except ImportError:  # litellm without the OpenAI SDK: nothing of it to recognise
        return None
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, openai.OpenAIError) and not isinstance(exc, openai.APIError):
            return (str(exc).splitlines() or [type(exc).__name__])[0]
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
        # litellm through DSPy's own engine; an engine object is a RouterEngine (several servers, one
        # litellm Router). A saved state's "litellm" selection rebuilds the default.
        engine = kwargs.pop("engine", None)
        super().__init__(model, engine=engine if engine is not None and not isinstance(engine, str) else "litellm",
                         num_retries=0, **kwargs)
        self.role, self.shown = role, shown
        self.total_timeout, self.retries = float(total_timeout), int(dspy_retries if retries is None else retries)

    def dump_state(self) -> dict[str, Any]:
        # DSPy rebuilds a saved LM as cls(**state): the bound and the role travel with it. DSPy's state
        # leaves out the key but not a URL's credentials (``?code=KEY``): the URL is saved redacted, so a
        # ``program.save()`` never writes them (a masked URL read back fails at its own server).
        from lmcot.redact import redact_url

        state = {**super().dump_state(), "role": self.role, "shown": self.shown, "total_timeout": self.total_timeout,
                 "retries": self.retries}
        if isinstance(state.get("api_base"), str):
            state["api_base"] = redact_url(state["api_base"])
        return state

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
                problem = client_setup_problem(exc)
                if problem is not None:
                    raise EndpointError(f"{self._where()}: the client sent nothing: {problem} (not retried: "
                                        "no retry can mend it)") from exc
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


# -- building one ---------------------------------------------------------------------------
_LITELLM_IMPORT = threading.Lock()


def import_litellm() -> None:
    """Import litellm completely, once, before any thread can. Two first imports racing in threads
    break it on CPython 3.11: a cached reply being unpickled imports ``litellm.types.utils`` (holding
    that module's import lock, then waiting for the package's) while DSPy's lazy proxy imports the
    package in another thread (which then needs ``litellm.types.utils``); CPython breaks the deadlock
    by handing one of them the half-initialised package, and every call of that process fails with
    "partially initialized module 'litellm' has no attribute 'completion'". A fresh process resuming
    an evaluation (some replies cached, some not, concurrent calls) hit it every time. The import is
    paid anyway by the first call or cached reply."""
    with _LITELLM_IMPORT:
        import litellm  # noqa: F401


def build_http_lm(cfg: LMConfig, sampling: dict[str, Any], *, role: str) -> dspy.LM:
    """An :class:`HttpLM` for ``cfg`` (``backend: litellm``): one server (``api_base`` a URL, or the
    provider's own endpoint) or several (a list: one litellm Router over them, :class:`RouterEngine`).
    ``sampling``: the settings ``lmcot.lms.build_lm`` gives every LM. The key is read from the
    environment here (:func:`api_key`)."""
    cfg = validated(cfg, role)
    key = api_key(cfg)
    if key is None and cfg.api_base is not None:
        # OpenAI-compatible servers (vLLM, a local test server) often need no key, but the OpenAI
        # client refuses to start without one.
        key = "no-key"
    urls = [url.get_secret_value() for url in cfg.servers()]  # for the client only; shown redacted
    import_litellm()
    client: dict[str, Any] = {}
    if isinstance(cfg.api_base, list):  # servers of one model (a list is never empty: key is set above)
        client["engine"] = RouterEngine(cfg.model, urls, api_key=key, timeout=cfg.timeout)
    else:
        if urls:
            client["api_base"] = urls[0]
        if cfg.timeout is not None:
            client["timeout"] = cfg.timeout
        if key is not None:
            client["api_key"] = key
    warn_unknown_extra(cfg.model, cfg.extra, role)
    return HttpLM(cfg.model, role=role, shown=cfg.endpoint_shown(),
                  total_timeout=cfg.total_timeout, retries=cfg.num_retries, **sampling, **{**cfg.extra, **client})


def api_key(cfg: LMConfig) -> str | None:
    """The key for ``cfg`` from the environment variable its ``api_key_env`` names, read when the client
    is built (a rotated key is picked up by the next run) and registered for redaction as it is read
    (``lmcot.redact.secret_from_env``); never stored on the config."""
    if not cfg.api_key_env:
        return None
    from lmcot.redact import secret_from_env

    key = secret_from_env(cfg.api_key_env)
    if not key:
        from lmcot.config_types import ConfigError

        raise ConfigError(f"environment variable {cfg.api_key_env} (named by api_key_env of {cfg.model}) is not set")
    return key


def validated(cfg: LMConfig, role: str) -> LMConfig:
    """``cfg`` with its ``api_base`` checked and typed: ``model_copy(update={"api_base": url})`` skips
    pydantic's validation and would hand a plain, unchecked string to the client."""
    from lmcot.redact import SecretURL

    if cfg.api_base is None or isinstance(cfg.api_base, SecretURL) or (
            isinstance(cfg.api_base, list) and all(isinstance(url, SecretURL) for url in cfg.api_base)):
        return cfg
    from pydantic import ValidationError

    from lmcot.config_types import ConfigError

    try:
        return type(cfg).model_validate(cfg.model_dump())
    except ValidationError as err:
        first = err.errors()[0]
        raise ConfigError(f"{role}.{'.'.join(map(str, first['loc']))}: {first['msg']}") from None


# -- several servers of one model: litellm's Router --------------------------------------------
# Seconds a failing server rests before it is tried again. Short enough that a restarted replica is
# back in rotation soon; long enough that a hung one (each try waits out `timeout`) costs few calls.
COOLDOWN_S = 30.0
GROUP = "lmcot-large-lm"  # the Router's name for the servers' shared model

# DSPy 3.4 marks the complete_legacy() shortcut deprecated (removed in 3.5, which pyproject excludes);
# it is the one door that carries litellm-only settings, so the per-call warning is silenced here.
warnings.filterwarnings("ignore", message=r"The custom-engine complete_legacy\(\) shortcut", category=DeprecationWarning)


class RouterEngine(SharedEngine):
    """A DSPy engine over one ``litellm.Router``: every call goes to one of its servers."""

    def __init__(self, model: str, urls: list[str], *, api_key: str, timeout: float | None,
                 cooldown_s: float = COOLDOWN_S):
        import litellm  # already imported, before any thread could, by build_http_lm (import_litellm)

        self.model, self.urls = model, list(urls)
        params = [{"model": model, "api_base": url, "api_key": api_key, **({"timeout": timeout} if timeout else {})}
                  for url in self.urls]
        # Failover only (one request per server per try): HttpLM's loop owns the retries and their count.
        self.router = litellm.Router(model_list=[{"model_name": GROUP, "litellm_params": p} for p in params],
                                     num_retries=len(self.urls) - 1, allowed_fails=0, cooldown_time=cooldown_s,
                                     retry_after=0)

    def complete_legacy(self, lm, request: dict[str, Any], **context):
        """DSPy's ordinary call: ``litellm.completion``'s keyword arguments, sent through the Router."""
        from lmcot._dspy_reaches import finish_legacy_call, litellm_errors

        data = dict(request)
        data.pop("rollout_id", None)  # DSPy's cache-key field, never sent (as in dspy.clients.lm)
        data.pop("model", None)
        headers = {"User-Agent": f"DSPy/{dspy.__version__}", **(data.pop("headers", None) or {})}
        with litellm_errors(model=lm.model):
            raw = self.router.completion(model=GROUP, headers=headers, **data)
        return finish_legacy_call(lm, raw, data)

    def complete(self, request):
        """A typed ``dspy.lm15.Request`` (the judge's log-probability calls)."""
        from lmcot._dspy_reaches import litellm_errors, lm15_to_litellm, litellm_to_lm15

        data = lm15_to_litellm(request)
        with litellm_errors(model=request.model):
            raw = self.router.completion(model=GROUP, **data)
        return litellm_to_lm15(raw, request)

    def dump_state(self) -> dict[str, Any]:
        # What DSPy records when a program's state is dumped (lmcot clears LMs before saving): no key.
        from lmcot.redact import redact_url

        return {"model": self.model, "servers": [redact_url(url) for url in self.urls]}

    @classmethod
    def load_state(cls, state: dict[str, Any]) -> RouterEngine:
        raise ValueError("a routed LM is rebuilt from the config (lmcot.lms.build_lm), not from a saved state: "
                         "its servers' credentials are not saved")

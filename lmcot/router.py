"""Several servers of one large LM (vLLM replicas, say), reached through litellm's Router.

    large_lm:
      model: hosted_vllm/Qwen/Qwen2.5-72B-Instruct
      api_base: [http://gpu1:8000/v1, http://gpu2:8000/v1]     # the same model on each

``lmcot.lms.build_lm`` hands a list of ``api_base`` URLs to :func:`build_routed_lm`: one
``litellm.Router`` whose deployments are the servers, as the engine of an ``lmcot.http_lm.HttpLM`` (the
total time bound and retries every HTTP model gets). What it does:

- **Spreads calls** over the servers (litellm's ``simple-shuffle``), not hand-written balancing.
- **Rests a failing server.** A server that refuses the connection, times out or answers 5xx/429 is
  put in litellm's cooldown for ``COOLDOWN_S`` seconds (``allowed_fails=0``) and the call is retried at
  once on another server (the Router's ``num_retries`` = the number of servers); after the cooldown it
  is tried again. When every server is resting the Router's "no deployments available" arrives as a
  rate limit, which ``HttpLM`` waits out and asks again (``num_retries``, within ``total_timeout``): no
  answer is lost while one server lives. Only when every server refuses does the call fail at once.
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
"""

from __future__ import annotations

import logging
import warnings
from typing import Any, Callable

import dspy

from lmcot.engine_base import SharedEngine

log = logging.getLogger(__name__)

# Seconds a failing server rests before it is tried again. Short enough that a restarted replica is
# back in rotation soon; long enough that a hung one (each try waits out `timeout`) costs few calls.
COOLDOWN_S = 30.0
GROUP = "lmcot-large-lm"  # the Router's name for the servers' shared model

# DSPy 3.4 marks the complete_legacy() shortcut deprecated (removed in 3.5, which pyproject excludes);
# it is the one door that carries litellm-only settings, so the per-call warning is silenced here.
warnings.filterwarnings("ignore", message=r"The custom-engine complete_legacy\(\) shortcut", category=DeprecationWarning)


def api_bases(value: Any) -> list[Any]:
    """The servers of an ``api_base`` setting (none, one, or a list)."""
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


class RouterEngine(SharedEngine):
    """A DSPy engine over one ``litellm.Router``: every call goes to one of its servers."""

    def __init__(self, model: str, urls: list[str], *, api_key: str, timeout: float | None,
                 cooldown_s: float = COOLDOWN_S):
        import litellm  # already imported, before any thread could, by lmcot.lms.build_lm

        self.model, self.urls = model, list(urls)
        params = [{"model": model, "api_base": url, "api_key": api_key, **({"timeout": timeout} if timeout else {})}
                  for url in self.urls]
        self.router = litellm.Router(model_list=[{"model_name": GROUP, "litellm_params": p} for p in params],
                                     num_retries=len(self.urls), allowed_fails=0, cooldown_time=cooldown_s,
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


def build_routed_lm(cfg, sampling: dict[str, Any], *, role: str) -> dspy.LM:
    """An ``HttpLM`` (lmcot's total time bound and retries) for ``cfg``, an ``LMConfig`` whose ``api_base``
    is a list, over one Router; ``sampling`` are the settings ``build_lm`` gives every LM."""
    from lmcot.http_lm import HttpLM, warn_unknown_extra
    from lmcot.redact import register_secret, url_secrets

    urls = [url.get_secret_value() for url in cfg.api_base]  # for the client only; shown redacted
    for url in urls:
        for secret in url_secrets(url):
            register_secret(secret)
    key = cfg.api_key()
    register_secret(key)
    # OpenAI-compatible servers (vLLM) often need no key, but the OpenAI client refuses to start without one.
    engine = RouterEngine(cfg.model, urls, api_key=key or "no-key", timeout=cfg.timeout)
    warn_unknown_extra(cfg.model, cfg.extra, role)
    return HttpLM(cfg.model, engine=engine, role=role, shown=", ".join(str(url) for url in cfg.api_base),
                  total_timeout=cfg.total_timeout, retries=cfg.num_retries, **sampling, **dict(cfg.extra))


def check_each_server(cfg, key: str, check_one: Callable[[Any, str], None]) -> None:
    """The start-up probe of every server in ``cfg.api_base``: passes when at least one answers, with a
    (redacted) warning for each one that does not; fails naming every server when none answers."""
    from lmcot.config import ConfigError
    from lmcot.redact import redact

    urls = api_bases(cfg.api_base)
    dead: list[str] = []
    for url in urls:
        try:
            check_one(cfg.model_copy(update={"api_base": url}), key)
        except ConfigError as exc:
            dead.append(redact(str(exc)))
    if len(dead) == len(urls):
        raise ConfigError(f"{key}.api_base: none of the {len(urls)} servers answers: " + "; ".join(dead))
    for message in dead:
        log.warning("%s Its calls go to the other %d server(s); it is tried again every %g s.",
                    message, len(urls) - len(dead), COOLDOWN_S)

"""Build the two LMs from config: ``build_lm(cfg) -> dspy.LM``.

Either role can be either kind: a litellm model string over HTTP (OpenAI, Anthropic, a vLLM or
Ollama server, ...) or an in-process transformers model. API keys are read from the environment at
call time (``api_key_env``) and never stored in config, saved programs or logs.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import dspy

from lmcot.config import LMConfig

log = logging.getLogger(__name__)

_DEFAULT_CACHE = "~/.cache/lmcot"


def configure_cache(cache_dir: str | Path = _DEFAULT_CACHE) -> Path:
    """Point DSPy's disk cache of LM calls at ``cache_dir/dspy``: a rerun makes no repeated call, and
    a crash loses only the calls in flight (each response is written when it arrives)."""
    path = Path(os.path.expanduser(str(cache_dir))) / "dspy"
    path.mkdir(parents=True, exist_ok=True)
    dspy.configure_cache(enable_disk_cache=True, enable_memory_cache=True, disk_cache_dir=str(path))
    return path


def build_lm(cfg: LMConfig, name: str | None = None) -> dspy.LM:
    """A ``dspy.LM`` for ``cfg``. An in-process model is named ``hf/<label>@<hash of the weights>``
    (``name`` sets the label, default the folder name), so a retrained checkpoint never reuses its
    parent's cached outputs, whatever it is called."""
    common: dict[str, Any] = {"temperature": cfg.temperature, "max_tokens": cfg.max_tokens, "cache": cfg.cache}
    if cfg.top_p is not None:
        common["top_p"] = cfg.top_p
    if cfg.seed is not None:
        common["seed"] = cfg.seed
    if cfg.backend == "transformers":
        from lmcot.hf_engine import TransformersEngine

        from lmcot.tiny import is_tiny_random

        if is_tiny_random(cfg.model):
            log.warning("%s is a tiny random-init model built locally (no hub access): outputs are noise "
                        "until trained; pass a real checkpoint for real results", cfg.model)
        engine = TransformersEngine(cfg.model, device=cfg.device, dtype=cfg.dtype, batch_size=cfg.batch_size,
                                    max_input_tokens=cfg.max_input_tokens, trust_remote_code=cfg.trust_remote_code,
                                    revision=cfg.revision)
        label = f"{name}@{engine.fingerprint}" if name else engine.name_hint
        return dspy.LM(f"hf/{label}", engine=engine, num_retries=0, **common)
    kwargs = dict(cfg.extra)
    if cfg.api_base:
        kwargs["api_base"] = cfg.api_base
    if cfg.timeout is not None:
        kwargs["timeout"] = cfg.timeout
    key = cfg.api_key()
    if key is not None:
        kwargs["api_key"] = key
    elif cfg.api_base:
        # OpenAI-compatible servers (vLLM, a local test server) often need no key, but the OpenAI
        # client refuses to start without one.
        kwargs["api_key"] = "no-key"
    return dspy.LM(cfg.model, engine="litellm", num_retries=cfg.num_retries, **common, **kwargs)


def check_endpoint(cfg: LMConfig, key: str, timeout: float = 5.0) -> None:
    """Fail at once, naming the config key, when ``cfg.api_base`` points at a host:port that takes no
    connection (a server not started, a wrong port or host). Otherwise every call would first wait out
    the client's retries (``num_retries`` x ``timeout``) before the run reports anything. Only a TCP
    connect: no request is sent, nothing is paid. Skipped for in-process models, without ``api_base``
    (the provider's own endpoint), and when a proxy carries the request."""
    if cfg.backend != "litellm" or not cfg.api_base:
        return
    import socket
    import urllib.parse
    import urllib.request

    from lmcot.config import ConfigError

    url = urllib.parse.urlsplit(cfg.api_base)
    try:
        host, port = url.hostname, url.port or {"http": 80, "https": 443}.get(url.scheme)
    except ValueError:  # a port that is not a number
        raise ConfigError(f"{key}.api_base={cfg.api_base}: not a valid URL") from None
    if not host or port is None:
        return  # not an http(s) URL litellm would open a socket to directly; leave it to the client
    proxies = urllib.request.getproxies()
    if (proxies.get(url.scheme) or proxies.get("all")) and not urllib.request.proxy_bypass(host):
        return
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise ConfigError(f"{key}.api_base={cfg.api_base}: cannot connect to {host}:{port} ({reason}); "
                          "is the server running?") from None


def hf_engine_of(lm: dspy.LM):
    """The ``TransformersEngine`` behind ``lm``, or None for an HTTP model."""
    from lmcot.hf_engine import TransformersEngine

    engine = getattr(lm, "engine", None)
    return engine if isinstance(engine, TransformersEngine) else None

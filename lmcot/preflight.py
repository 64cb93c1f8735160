"""Checks of a run's paths, models and endpoints, run before the first paid call.

Each failure is a one-line :class:`~lmcot.errors.PathError` (or ``ConfigError``) naming the path and
the option or config key, so a mistyped ``--out`` or ``small_lm.model`` or a server not started costs
nothing instead of failing after the teacher was paid: the output and cache folders, free space, the
in-process models of the roles a run uses (each checked and resolved by :mod:`lmcot.model_loading`, the
one home of a model setting, and returned resolved for the LMs to be built from), and last the start-up
probe of every ``api_base`` (:func:`check_endpoint`).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Callable

from lmcot.config import LMCoTConfig, LMConfig
from lmcot.errors import PathError
from lmcot.model_loading import ModelSource, check_generation_bounds, check_model_path, check_model_source

log = logging.getLogger(__name__)

__all__ = ["PathError", "check_before_calls", "check_cache_dir", "check_endpoint", "check_endpoints",
           "check_free_space", "check_local", "check_out_dir", "model_bytes"]


def _blocking_file(path: Path) -> Path | None:
    """``path`` itself or the nearest existing ancestor, when that is a file (no folder can be made)."""
    for p in (path, *path.parents):
        if p.exists():
            return p if not p.is_dir() else None
    return None


def check_out_dir(path: str | Path, key: str = "--out") -> None:
    """An output folder: fine if it is a folder or does not exist yet (and can be made)."""
    path = Path(os.path.expanduser(str(path)))
    blocker = _blocking_file(path)
    if blocker is not None:
        where = "is a file" if blocker == path else f"cannot be made: {blocker} is a file"
        raise PathError(f"{path}: {key} must be a folder, but it {where}")
    if path.is_dir() and not os.access(path, os.W_OK):
        raise PathError(f"{path}: {key} folder is not writable")


def check_cache_dir(cache_dir: str) -> None:
    path = Path(os.path.expanduser(cache_dir))
    blocker = _blocking_file(path / "replies")
    if blocker is not None:
        raise PathError(f"{blocker}: cache_dir={cache_dir} must be a folder, but {blocker} is a file")


def check_local(cfg: LMCoTConfig, out: str | Path | None = None,
                roles: tuple[str, ...] = ("small_lm", "large_lm")) -> dict[str, ModelSource]:
    """What this machine can tell, cheapest first: whose remote code would run; the output and cache
    folders and the local model paths of ``roles`` (keys of :meth:`LMCoTConfig.lm_roles`; plus the
    reference LM); then each in-process model of ``roles`` resolved to its config (hub ids: offline, in
    the local cache), its ``max_tokens`` within its context. Returns those resolved sources by role,
    for the LMs to be built from (``lmcot.lms.build_lm(..., source=)``), so none is resolved twice."""
    from lmcot.console import say

    for role, lm in cfg.lm_roles().items():
        if lm is not None and lm.backend == "transformers" and lm.trust_remote_code:
            say("warning:", "bold yellow", f"{role}.trust_remote_code=true: the Python code shipped with {lm.model} "
                "will run on this machine with your permissions")
    if out is not None:
        check_out_dir(out)
    check_cache_dir(cfg.cache_dir)
    sections = cfg.lm_roles()
    local = {role: sections[role] for role in roles
             if sections.get(role) is not None and sections[role].backend == "transformers"}
    for role, lm in local.items():  # every path before any model is read: a typo costs no load
        check_model_path(lm.model, f"{role}.model")
    if cfg.rationale_metrics.reference_lm:
        check_model_path(cfg.rationale_metrics.reference_lm, "rationale_metrics.reference_lm")
    sources: dict[str, ModelSource] = {}
    for role, lm in local.items():
        sources[role] = check_model_source(lm.model, f"{role}.model", revision=lm.revision,
                                           trust_remote_code=lm.trust_remote_code)
        check_generation_bounds(lm, role, config=sources[role].config)
    return sources


def check_endpoints(cfg: LMCoTConfig, roles: tuple[str, ...] = ("large_lm",)) -> None:
    """The start-up probe (:func:`check_endpoint`) of each LM of ``roles`` that is set: a server that
    nobody listens on fails now, not after every call's retries. The network goes last."""
    for role in roles:
        lm = cfg.lm_roles().get(role)
        if lm is not None:
            check_endpoint(lm, role)


def check_before_calls(cfg: LMCoTConfig, out: str | Path | None = None,
                       roles: tuple[str, ...] = ("small_lm", "large_lm"), *,
                       endpoints: tuple[str, ...] = ("large_lm",)) -> dict[str, ModelSource]:
    """Everything that can be checked before the first paid call: :func:`check_local`, then
    :func:`check_endpoints`. A caller with checks of its own (trainer settings, scorer models) calls
    the two itself, its own checks between them. Returns :func:`check_local`'s resolved sources."""
    sources = check_local(cfg, out, roles)
    check_endpoints(cfg, endpoints)
    return sources


# The reply cache grows by a few kB a call; below this much free space a run is about to fail.
CACHE_FLOOR_BYTES = 64 * 2**20


def model_bytes(model: str, revision: str | None = None) -> int:
    """The float32 size of ``model``'s weights, from its safetensors files (0 when they are not on
    disk: a hub id not downloaded yet)."""
    import json

    from lmcot.model_loading import resolve_model

    folder = Path(os.path.expanduser(resolve_model(model)))
    if not folder.exists():
        from huggingface_hub import try_to_load_from_cache

        try:
            found = try_to_load_from_cache(model, "config.json", revision=revision)
        except ValueError:
            found = None
        if not isinstance(found, str):
            return 0
        folder = Path(found).parent
    total = sum(f.stat().st_size for f in folder.glob("*.safetensors"))
    try:  # weights stored in 16 bits train (and are checkpointed) in float32
        dtype = json.loads((folder / "config.json").read_text()).get("torch_dtype") or ""
    except (OSError, ValueError, AttributeError):
        dtype = ""
    return total * 2 if "16" in str(dtype) else total


def check_free_space(out: str | Path, cache_dir: str, need_out: int, need_cache: int = CACHE_FLOOR_BYTES) -> None:
    """Refuse to start when the file systems of ``out`` and the cache lack the room the run will
    write (a disk that fills in the middle of training costs the paid calls made before)."""
    import shutil

    for path, need, key in ((Path(os.path.expanduser(str(out))), need_out, "--out"),
                            (Path(os.path.expanduser(cache_dir)), need_cache, "cache_dir")):
        existing = next((p for p in (path, *path.parents) if p.exists()), None)
        if existing is None or need <= 0:
            continue
        free = shutil.disk_usage(existing).free
        if free < need:
            raise PathError(f"{path}: {key} has {_size(free)} free, and this run writes about {_size(need)} there "
                            "(checkpoints and the trained model); free some space or choose another folder")


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


# -- the start-up probe of an HTTP model -----------------------------------------------------
# The start-up probe waits at most this long for the server's first byte (or cfg.timeout if shorter):
# with the 5 s connect timeout, a server that accepts but never answers is reported within ~35 s,
# before any question waits out its tries (up to ROLE.total_timeout each).
PROBE_REPLY_TIMEOUT = 30.0


def check_endpoint(cfg: LMConfig, key: str, timeout: float = 5.0, reply_timeout: float | None = None) -> None:
    """Fail at once, naming the config keys, when ``cfg.api_base`` points at a host:port that takes no
    connection (a server not started, a wrong port or host), or that accepts one but sends nothing
    back within ``min(cfg.timeout, PROBE_REPLY_TIMEOUT)`` seconds (a hung server, a port that is not
    an HTTP server). Otherwise every call would first wait out the client's retries (``num_retries`` x
    ``timeout``) before the run reports anything. The probe is a ``GET`` of ``api_base`` itself: any
    HTTP reply (404 and 401 included) proves the server answers; no model is called, nothing is paid.
    Skipped for in-process models and when a proxy carries the request; without ``api_base`` (the
    provider's own endpoint) only the provider's key is checked (:func:`check_provider_key`)."""
    if cfg.backend != "litellm":
        return
    if not cfg.api_base:
        return check_provider_key(cfg, key)
    from lmcot.http_lm import validated

    cfg = validated(cfg, key)
    if isinstance(cfg.api_base, list):  # several servers: at least one must answer
        return check_each_server(cfg, key, lambda one, name: check_endpoint(one, name, timeout, reply_timeout))
    import socket
    import urllib.parse
    import urllib.request

    from lmcot.config_types import ConfigError

    shown = str(cfg.api_base)  # a SecretURL prints redacted
    url = urllib.parse.urlsplit(cfg.api_base.get_secret_value())
    try:
        host, port = url.hostname, url.port or {"http": 80, "https": 443}.get(url.scheme)
    except ValueError:  # a port that is not a number
        raise ConfigError(f"{key}.api_base={shown}: not a valid URL") from None
    if not host or port is None:
        return  # not an http(s) URL litellm would open a socket to directly; leave it to the client
    proxies = urllib.request.getproxies()
    if (proxies.get(url.scheme) or proxies.get("all")) and not urllib.request.proxy_bypass(host):
        return
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise ConfigError(f"{key}.api_base={shown}: cannot connect to {host}:{port} ({reason}); "
                          "is the server running?") from None
    wait = reply_timeout if reply_timeout is not None else min(cfg.timeout or PROBE_REPLY_TIMEOUT, PROBE_REPLY_TIMEOUT)
    _probe_reply(url, host, port, timeout, wait, key, shown)


# Providers whose key litellm reads only from the one variable it names (checked in its source). Others
# have more ways (Azure's several variables and Entra ID, AWS roles, Google's default credentials, a
# local Ollama, providers whose variable litellm's validator names differently): left to the call.
_KEY_ONLY_PROVIDERS = frozenset({"openai", "anthropic", "gemini", "mistral", "groq", "deepseek", "xai", "cohere"})


def check_provider_key(cfg: LMConfig, key: str) -> None:
    """A model on a provider's own endpoint (no ``api_base``) whose key is not in the environment fails
    now, naming the variable: litellm reports a missing key only when called, as a 500 that looks
    transient. The variable is litellm's own (``litellm.validate_environment``), for the providers
    that take a key from it alone. With ``api_key_env`` set, the client names that variable."""
    if cfg.api_key_env:
        return
    import litellm

    from lmcot.config_types import ConfigError

    try:
        provider = litellm.get_llm_provider(cfg.model)[1]
        missing = litellm.validate_environment(model=cfg.model).get("missing_keys") or []
    except Exception:  # noqa: BLE001 - a model litellm cannot place: the call will say what it lacks
        return
    names = [name for name in missing if str(name).endswith("_API_KEY")]
    if provider in _KEY_ONLY_PROVIDERS and names and not any(name in os.environ for name in names):  # presence only
        raise ConfigError(f"{key}.model={cfg.model}: with no {key}.api_base litellm calls the provider, which needs "
                          f"{' or '.join(names)} in the environment, and it is not set; export it (a rerun answered "
                          f"from the cache needs it too), name the variable that holds the key with "
                          f"{key}.api_key_env, or set {key}.api_base to your server")


def _probe_reply(url, host: str, port: int, connect_timeout: float, wait: float, key: str, shown: str) -> None:
    """GET the api_base path and wait for the status line (any status will do)."""
    import http.client
    import socket
    import ssl

    from lmcot.config_types import ConfigError

    cls = http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
    conn = cls(host, port, timeout=connect_timeout)
    try:
        conn.connect()
        conn.sock.settimeout(wait)
        conn.request("GET", url.path or "/", headers={"User-Agent": "lmcot-probe"})
        conn.getresponse().close()
    except (TimeoutError, socket.timeout):
        raise ConfigError(f"{key}.api_base={shown}: the server at {host}:{port} accepted a connection but sent no "
                          f"reply within {wait:g} s ({key}.timeout bounds each call); is it hung, overloaded, or "
                          "not an HTTP server?") from None
    except (http.client.RemoteDisconnected, ConnectionResetError, http.client.BadStatusLine) as exc:
        raise ConfigError(f"{key}.api_base={shown}: the server at {host}:{port} closed the connection without a "
                          f"valid HTTP reply ({type(exc).__name__}); is it an HTTP server? ({key}.timeout bounds "
                          "each call)") from None
    except (ssl.SSLError, OSError):
        return  # TLS set-up the client configures its own way (certificates): leave it to the client
    finally:
        conn.close()


def check_each_server(cfg, key: str, check_one: Callable[[Any, str], None]) -> None:
    """The start-up probe of every server in ``cfg.api_base``: passes when at least one answers, with a
    (redacted) warning for each one that does not; fails naming every server when none answers."""
    from lmcot.config_types import ConfigError
    from lmcot.http_lm import COOLDOWN_S

    urls = cfg.servers()
    dead: list[str] = []
    for url in urls:
        try:
            check_one(cfg.model_copy(update={"api_base": url}), key)
        except ConfigError as exc:  # its message shows the server as a SecretURL prints it: redacted
            dead.append(str(exc))
    if len(dead) == len(urls):
        raise ConfigError(f"{key}.api_base: none of the {len(urls)} servers answers: " + "; ".join(dead))
    for message in dead:
        log.warning("%s Its calls go to the other %d server(s); it is tried again every %g s.",
                    message, len(urls) - len(dead), COOLDOWN_S)

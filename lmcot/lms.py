"""Build the LMs from config: ``build_lm(cfg) -> dspy.LM``; a run's by role, from the models its checks
resolved: ``build_lms(config, roles, sources)``; lmcot's reply cache for a block: ``cache_in(dir)``.

Either role can be either kind: a litellm model string over HTTP (OpenAI, Anthropic, a vLLM or
Ollama server, ...; ``lmcot.http_lm.build_http_lm``, which reads the key ``api_key_env`` names when the
client is built) or an in-process transformers model. Keys are never stored in config, saved programs
or logs.
"""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping

import dspy

from lmcot.config import LMCoTConfig, LMConfig, SmallLMConfig
from lmcot.hf_engine import hf_engine_of

if TYPE_CHECKING:
    from lmcot.model_loading import ModelSource

log = logging.getLogger(__name__)

_DEFAULT_CACHE = "~/.cache/lmcot"


def configure_cache(cache_dir: str | Path = _DEFAULT_CACHE, *, memory: bool = True) -> Path:
    """Install lmcot's reply cache as ``dspy.cache``: LM replies as JSON rows in
    ``cache_dir/replies/replies.sqlite3`` (``lmcot.reply_cache.ReplyCache``; ``memory``: also DSPy's
    in-process LRU). A rerun makes no repeated call, a crash loses only the calls in flight (each reply
    is written when it arrives), and no reply that failed to parse is kept. Returns the folder.

    The one place lmcot installs its cache. A ``cache_dir/dspy`` folder left by an earlier lmcot (DSPy's
    pickle cache) is never read: unpickling a file can run code, and a cache folder may come from
    anywhere."""
    from lmcot.memo import set_memo_dir
    from lmcot.reply_cache import ReplyCache

    root = Path(os.path.expanduser(str(cache_dir)))
    _note_pickle_cache(root / "dspy")
    path = root / "replies"
    if not _reply_cache_in_use(path, memory):  # already installed there: one cache, one open store
        dspy.cache = ReplyCache(path, enable_memory_cache=memory)
    # Fingerprints and truncations remembered next to the calls, so a cached rerun loads no model.
    set_memo_dir(root / "memo")
    return path


def _reply_cache_in_use(path: Path, memory: bool) -> bool:
    """Whether ``dspy.cache`` is lmcot's reply cache in ``path`` with that memory setting."""
    from lmcot._dspy_reaches import chosen_dspy_cache
    from lmcot.reply_cache import ReplyCache

    current = chosen_dspy_cache()
    return (isinstance(current, ReplyCache) and Path(current.disk_cache_dir) == path
            and current.enable_memory_cache == memory)


def _installed(cache_dir: str | Path, memory: bool) -> Path | None:
    """The replies folder when lmcot's cache in ``cache_dir`` is the one in use (and its memos), else None."""
    from lmcot.memo import memo_dir

    root = Path(os.path.expanduser(str(cache_dir)))
    in_use = _reply_cache_in_use(root / "replies", memory) and memo_dir() == root / "memo"
    return root / "replies" if in_use else None


@contextmanager
def cache_in(cache_dir: str | Path = _DEFAULT_CACHE, *, memory: bool = True):
    """:func:`configure_cache` for a block: a library call (``compile``, an evaluation, an experiment)
    uses lmcot's cache in ``cache_dir`` and leaves DSPy's global cache (and lmcot's memo folder) as it
    found them. Inside a block that already uses that cache (``compile`` under ``compile_from_config``,
    a student's compile inside an experiment) it installs nothing, so the cache is installed once per
    run; what the block changes is still undone at its end."""
    from lmcot._dspy_reaches import chosen_dspy_cache, restore_dspy_cache
    from lmcot.memo import memo_dir, set_memo_dir

    before, memos = chosen_dspy_cache(), memo_dir()  # None: nobody had chosen one, and after the block nobody has
    try:
        yield _installed(cache_dir, memory) or configure_cache(cache_dir, memory=memory)
    finally:
        restore_dspy_cache(before)
        set_memo_dir(memos)


_NOTED_PICKLE_CACHES: set[Path] = set()


def _note_pickle_cache(folder: Path) -> None:
    """One log line per process for an old pickle cache beside the new one (ignored, never opened)."""
    if folder in _NOTED_PICKLE_CACHES or not folder.is_dir():
        return
    if not any((folder / shard / "cache.db").is_file() for shard in ("", *(f"{i:03d}" for i in range(16)))):
        return  # diskcache's files: cache.db, or one per shard of DSPy's FanoutCache
    _NOTED_PICKLE_CACHES.add(folder)
    log.warning("%s: a reply cache written by an earlier lmcot (DSPy's pickle format) is ignored and never read "
                "(unpickling can run code); replies are cached as JSON in %s from now on; delete %s to free its space",
                folder, folder.parent / "replies", folder)


def build_lm(cfg: LMConfig, name: str | None = None, *, role: str | None = None,
             source: ModelSource | None = None) -> dspy.LM:
    """A ``dspy.LM`` for ``cfg``. An in-process model is named ``hf/<label>@<hash of the weights>``
    (``name`` sets the label, default the folder name), so a retrained checkpoint never reuses its
    parent's cached outputs, whatever it is called. An HTTP model is a :class:`lmcot.http_lm.HttpLM`
    (a total time bound per call, no retries of an unreachable host; :func:`lmcot.http_lm.build_http_lm`);
    ``role`` is its config key in messages (default ``large_lm`` / ``small_lm`` by the config's type).
    ``source``: an in-process ``cfg.model`` already resolved and checked (``lmcot.preflight.check_local``),
    not resolved again."""
    from lmcot._dspy_reaches import dspy_cache_is_set
    from lmcot.config import LargeLMConfig

    if not dspy_cache_is_set():
        # Nobody chose a cache (the Python API without lmcot.configure_cache): lmcot's, at its default
        # place, rather than DSPy's pickle cache, so unparsable replies are never kept there either.
        log.info("LM replies are cached in %s (lmcot.configure_cache(DIR) chooses another folder)",
                 configure_cache())

    role = role or ("large_lm" if isinstance(cfg, LargeLMConfig) else "small_lm" if isinstance(cfg, SmallLMConfig)
                    else "lm")
    sampling: dict[str, Any] = {"temperature": cfg.temperature, "max_tokens": cfg.max_tokens, "cache": cfg.cache}
    if cfg.top_p is not None:
        sampling["top_p"] = cfg.top_p
    if cfg.seed is not None:
        sampling["seed"] = cfg.seed
    if cfg.backend != "transformers":
        from lmcot.http_lm import build_http_lm

        return build_http_lm(cfg, sampling, role=role)
    from lmcot.hf_engine import TransformersEngine
    from lmcot.model_loading import check_generation_bounds, check_model_source

    if source is not None and not source.is_for(cfg):
        raise ValueError(f"{role}: the resolved source {source.setting} is not {role}.model={cfg.model}")
    if source is None:
        source = check_model_source(cfg.model, f"{role}.model", revision=cfg.revision,
                                    trust_remote_code=cfg.trust_remote_code)
    check_generation_bounds(cfg, role, config=source.config)  # max_tokens within its context, before any call
    engine = TransformersEngine(source, device=cfg.device, dtype=cfg.dtype, batch_size=cfg.batch_size,
                                max_input_tokens=cfg.max_input_tokens, repetition_penalty=cfg.repetition_penalty,
                                no_repeat_ngram_size=cfg.no_repeat_ngram_size)
    label = f"{name}@{engine.fingerprint}{engine.settings_tag}" if name else engine.name_hint
    return dspy.LM(f"hf/{label}", engine=engine, num_retries=0, **sampling)


def build_lms(config: LMCoTConfig, roles: Iterable[str] = ("small_lm", "large_lm"), *,
              sources: Mapping[str, ModelSource] | None = None, names: Mapping[str, str] | None = None,
              ) -> dict[str, dspy.LM]:
    """A run's LMs by role (``small_lm``, ``large_lm``), each built once by :func:`build_lm` from its
    model as resolved before the first call, where ``sources`` has it (``lmcot.preflight.check_local``;
    a role missing there is resolved here). ``names``: a label by role (a program folder's small LM).
    The one way ``lmcot evaluate``, ``compile``, ``experiment`` and a program folder build theirs."""
    sources, names = sources or {}, names or {}
    return {role: build_lm(getattr(config, role), names.get(role), role=role, source=sources.get(role))
            for role in roles}


def build_checkpoint_lm(small: SmallLMConfig, checkpoint: str | Path, name: str) -> dspy.LM:
    """The small LM with a trained ``checkpoint``'s weights and ``small``'s other settings (sampling,
    device, dtype, ...), named ``name`` in its cache keys: the one way a stage's, the compiled program's or
    an experiment student's checkpoint becomes an LM."""
    return build_lm(small.model_copy(update={"model": str(checkpoint)}), name=name)


def small_lm_config(lm: dspy.LM) -> SmallLMConfig:
    """The settings an in-process ``lm`` was built with (``build_lm`` read backwards), so code that
    retrains or rebuilds it takes weights and settings from the same place: the LM itself."""
    engine = hf_engine_of(lm)
    if engine is None:
        raise ValueError(f"{lm.model} is not an in-process transformers model")
    sampling = {k: lm.kwargs[k] for k in ("temperature", "max_tokens", "top_p", "seed") if lm.kwargs.get(k) is not None}
    return SmallLMConfig(model=str(engine.model_id), backend="transformers", cache=lm.cache, device=engine.device_setting,
                         dtype=engine.dtype_setting, batch_size=engine.batch_size,
                         max_input_tokens=engine.max_input_tokens, trust_remote_code=engine.trust_remote_code,
                         revision=engine.revision, repetition_penalty=engine.repetition_penalty,
                         no_repeat_ngram_size=engine.no_repeat_ngram_size, **sampling)

"""Checks of paths and models named by the command line and the config, run before the first paid call.

Each failure is a one-line :class:`PathError` (or ``ConfigError``) naming the path and the option or
config key, so a mistyped ``--out`` or ``small_lm.model`` costs nothing instead of failing after the
teacher was paid. :func:`check_model_source` resolves an in-process model as far as its config.json (no
weights): a folder or file that exists, an installed ``pkg://`` file, a GGUF that parses, a hub id
that is available (offline: in the local Hugging Face cache), and returns it resolved for the LM to
be built from; :func:`check_generation_bounds` holds generation lengths to the model's context.
"""

from __future__ import annotations

import os
from pathlib import Path

from typing import TYPE_CHECKING

from lmcot.config import LMCoTConfig, LMConfig
from lmcot.errors import UserError

if TYPE_CHECKING:
    from lmcot.model_loading import ModelSource


class PathError(UserError, ValueError):
    """A path that cannot be used as given; the message names it and the option or key."""


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


def looks_local(model: str) -> bool:
    """A filesystem path rather than a hub id (``org/name``)."""
    if "://" in model:  # a scheme another loader resolves
        return False
    return model.startswith(("/", "./", "../", "~", ".\\")) or model.count("/") >= 2 or os.path.exists(model)


def check_model_path(model: str, key: str) -> None:
    # Existence only: a single file (e.g. a .gguf checkpoint) may be a valid model for its loader.
    if looks_local(model) and not Path(os.path.expanduser(model)).exists():
        raise PathError(f"{model}: {key}: no such model folder or file")


def check_model_source(model: str, key: str, *, revision: str | None = None,
                       trust_remote_code: bool = False) -> ModelSource:
    """``model`` resolved (:func:`lmcot.model_loading.resolve_source`: its files and config, no weights),
    or a one-line error naming ``key`` and the value. What the LM is then built from, not resolved again."""
    from lmcot.errors import UserError
    from lmcot.model_loading import resolve_source

    check_model_path(model, key)
    if not looks_local(model) and "://" not in model and not _hub_id_available(model, revision):
        raise PathError(f"{key}={model}: not a local folder or file, and not in the Hugging Face cache (HF_HUB_OFFLINE "
                        "is set, so nothing is downloaded); give a folder, or run once with the network to fetch it")
    try:
        return resolve_source(model, trust_remote_code=trust_remote_code, revision=revision)
    except UserError as exc:
        raise type(exc)(f"{key}: {exc}") from None
    except (OSError, ValueError) as exc:  # transformers' own message for a hub id it cannot resolve
        raise PathError(f"{key}={model}: cannot be read as a model ({' '.join(str(exc).split())[:200]})") from None


def check_model(model: str, key: str, *, revision: str | None = None, trust_remote_code: bool = False):
    """``model``'s config (read without weights), or a one-line error naming ``key`` and the value."""
    return check_model_source(model, key, revision=revision, trust_remote_code=trust_remote_code).config


def _hub_id_available(repo_id: str, revision: str | None) -> bool:
    """Offline, whether the hub id's config.json is in the local cache; online, True (transformers
    fetches config.json in :func:`check_model` and names the problem)."""
    from huggingface_hub import constants, try_to_load_from_cache

    if not constants.HF_HUB_OFFLINE:
        return True
    try:
        return isinstance(try_to_load_from_cache(repo_id, "config.json", revision=revision), str)
    except ValueError:  # not even a valid repo id
        return False


def check_generation_bounds(lm: LMConfig, key: str, bounds: dict[str, int] | None = None, config=None) -> None:
    """``key.max_tokens`` (and the other token counts in ``bounds``, by config key) at most the
    in-process model's context: beyond it a causal model writes past its positions for minutes."""
    from lmcot.config import ConfigError
    from lmcot.model_loading import context_length

    if lm.backend != "transformers":
        return
    config = config if config is not None else check_model(lm.model, f"{key}.model", revision=lm.revision,
                                                           trust_remote_code=lm.trust_remote_code)
    context = context_length(config)
    if context is None:
        return
    positions, source = context
    for name, value in {f"{key}.max_tokens": lm.max_tokens, **(bounds or {})}.items():
        if value > positions:
            raise ConfigError(f"{name}={value}: more than {lm.model}'s context of {positions} positions ({source} in "
                              f"its config.json); use at most {positions}")


def _lm(lm: LMConfig | None, key: str) -> None:
    if lm is not None and lm.backend == "transformers":
        check_model_path(lm.model, f"{key}.model")


def check_config_paths(cfg: LMCoTConfig, *, out: str | Path | None = None, roles: tuple[str, ...] = ("small_lm",
                       "large_lm")) -> None:
    """The output folder, the cache folder and the local model folders of ``roles`` (any of
    ``small_lm``, ``large_lm``, ``kd.teacher``, ``rationale_metrics.judge``; plus the reference LM)."""
    if out is not None:
        check_out_dir(out)
    check_cache_dir(cfg.cache_dir)
    sections = {"small_lm": cfg.small_lm, "large_lm": cfg.large_lm, "kd.teacher": cfg.kd.teacher,
                "rationale_metrics.judge": cfg.rationale_metrics.judge}
    for role in roles:
        _lm(sections.get(role), role)
    if cfg.rationale_metrics.reference_lm:
        check_model_path(cfg.rationale_metrics.reference_lm, "rationale_metrics.reference_lm")


def check_config_models(cfg: LMCoTConfig, roles: tuple[str, ...]) -> dict[str, ModelSource]:
    """Each in-process model among ``roles`` resolves to its config.json, its ``max_tokens`` within its
    context (:func:`check_model_source`, :func:`check_generation_bounds`). Returns the resolved
    sources by role, for the LMs to be built from (``lmcot.lms.build_lm(..., source=)``)."""
    sections = {"small_lm": cfg.small_lm, "large_lm": cfg.large_lm, "kd.teacher": cfg.kd.teacher,
                "rationale_metrics.judge": cfg.rationale_metrics.judge}
    sources: dict[str, ModelSource] = {}
    for role in roles:
        lm = sections.get(role)
        if lm is not None and lm.backend == "transformers":
            sources[role] = check_model_source(lm.model, f"{role}.model", revision=lm.revision,
                                               trust_remote_code=lm.trust_remote_code)
            check_generation_bounds(lm, role, config=sources[role].config)
    return sources


# The reply cache grows by a few kB a call; below this much free space a run is about to fail.
CACHE_FLOOR_BYTES = 64 * 2**20


def model_bytes(model: str, revision: str | None = None) -> int:
    """The float32 size of ``model``'s weights, from its safetensors files (0 when they are not on
    disk: a hub id not downloaded yet)."""
    import json

    from lmcot.checkpoint import resolve_model

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


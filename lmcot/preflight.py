"""Checks of paths named by the command line and the config, run before the first paid call.

Each failure is a one-line :class:`PathError` naming the path and the option or config key, so a
mistyped ``--out`` or ``small_lm.model`` costs nothing instead of failing after the teacher was
paid. Only local facts are checked (existence, file vs folder); hub ids are left to transformers.
"""

from __future__ import annotations

import os
from pathlib import Path

from lmcot.config import LMCoTConfig, LMConfig
from lmcot.errors import UserError


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

"""A compiled program is a folder:

    OUT/program.json     what defines the program: DSPy state, sampling, the small LM's fingerprint and
                         decoding settings, the large LM it ran with (a record), and the compile's config
    OUT/small_lm/        the trained small LM (Hugging Face checkpoint, safetensors)

``save_program`` writes ``program.json``; ``LMGuidedCoT.from_folder(OUT)`` checks the
folder and rebuilds the program: the small LM from ``OUT/small_lm`` (its weights must hash to the
fingerprint saved beside them), everything about *how to run* (endpoints, keys, cache, data, outputs)
from the caller's config, API keys from the environment.

A program folder is untrusted input, like a downloaded checkpoint: what it may supply is listed, and
enforced, in ``lmcot.program_trust`` (the trust boundary). Loading one never runs Python shipped with
it, never sends anything to an endpoint it names, and never reads or writes outside it.

A user metric is code too: ``program.json`` records only its name (``metric_name``), never the
``metric`` setting, so evaluating a loaded program with it needs the metric given again
(``--set metric=...`` or the user's own config).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from lmcot.config import LMCoTConfig, apply_overrides, config_from_dict
from lmcot.errors import ModelLoadError
from lmcot.jsonl import write_json
from lmcot.program_trust import (FORMAT, LARGE_LM_SAMPLING, PROGRAM_FILE, SMALL_LM_DIR, SMALL_LM_SETTINGS,
                                 ProgramError, ProgramFolder, ProgramNotFound, read_program_folder, shown)

log = logging.getLogger(__name__)

__all__ = ["FORMAT", "PROGRAM_FILE", "ProgramError", "ProgramNotFound", "check_weights", "large_lm_note",
           "PREDICTORS", "program_config", "read_program", "save_program", "weights_digest"]


def save_program(program, out_dir: str | Path, config: LMCoTConfig, *, small_lm_label: str | None = None,
                 metric_name: str | None = None) -> Path:
    """Write ``out_dir/program.json`` beside the small LM's weights in ``out_dir/small_lm`` (the folder
    moves and is shared as a whole). The large LM and the small LM's decoding settings are recorded as
    the program ran with them, not as ``config`` says (a program compiled in Python may use other LMs).
    The user metric is saved by name only (``metric_name``, default ``config.metric``)."""
    from lmcot._dspy_reaches import state_without_lms

    out = Path(out_dir)
    small_dir = out / SMALL_LM_DIR
    # sha256 of each weights file: a folder whose weights are later swapped fails to load. Files, not the
    # engine's sampled-tensor fingerprint, so a GPU loading bfloat16 still matches.
    digest = weights_digest(small_dir) if small_dir.is_dir() else {}
    if not digest:
        raise ProgramError(f"{small_dir}: no *.safetensors weights; a program folder carries its small LM (save it "
                           "there first, e.g. model.save_pretrained(...))")
    public = config.model_copy(update={"metric": None}).to_public_dict()  # a metric is code: its name only
    public["small_lm"]["model"] = SMALL_LM_DIR  # relative to the folder: where LMGuidedCoT.from_folder finds it
    doc = {
        "format": FORMAT,
        "program": type(program).__name__,
        "num_samples": getattr(program, "num_samples", 1),
        "sample_temperature": getattr(program, "sample_temperature", 0.7),
        "select": getattr(program, "select", "vote"),
        # The form the small LM was trained to write (kd.rationale_form): it is run in that form on load,
        # whatever a caller's config says.
        "rationale_form": getattr(program, "rationale_form", "full"),
        "small_lm_label": small_lm_label,
        "small_lm_sha256": digest,
        "small_lm_name": getattr(getattr(program, "small_lm", None), "model", None),
        "small_lm": _small_lm_record(getattr(program, "small_lm", None), config),
        "large_lm_name": getattr(getattr(program, "large_lm", None), "model", None),
        "large_lm": _large_lm_record(getattr(program, "large_lm", None), config),
        "metric_name": metric_name or config.metric,
        # A record of the compile (redacted); never read when loading (lmcot.program_trust).
        "config": public,
        # The LMs are rebuilt from the caller's config on load; keeping their state here would only
        # duplicate it (and DSPy refuses to load custom engines from state without allow_unsafe_lm_state).
        "state": state_without_lms(program),
    }
    write_json(out / PROGRAM_FILE, doc)
    return out / PROGRAM_FILE


def _small_lm_record(lm, config: LMCoTConfig) -> dict[str, Any]:
    from lmcot.lms import hf_engine_of, small_lm_config

    settings = small_lm_config(lm) if lm is not None and hf_engine_of(lm) is not None else config.small_lm
    return {k: getattr(settings, k) for k in SMALL_LM_SETTINGS if getattr(settings, k) is not None}


def _large_lm_record(lm, config: LMCoTConfig) -> dict[str, Any]:
    """The large LM the program answers with: model string, sampling settings and (redacted, as a
    record only) the endpoint. ``config.large_lm`` when the program has none attached."""
    from lmcot.http_lm import HttpLM
    from lmcot.lms import hf_engine_of
    from lmcot.redact import redact

    if lm is None:
        cfg = config.large_lm
        record = {"model": cfg.model, "backend": cfg.backend,
                  **{k: getattr(cfg, k) for k in LARGE_LM_SAMPLING if getattr(cfg, k) is not None}}
        return {**record, **({"api_base": cfg.endpoint_shown()} if cfg.api_base else {})}
    kwargs = dict(getattr(lm, "kwargs", None) or {})
    if kwargs.get("max_tokens") is None and kwargs.get("max_completion_tokens") is not None:
        kwargs["max_tokens"] = kwargs["max_completion_tokens"]  # DSPy's name for reasoning models
    engine = hf_engine_of(lm)
    record = {"model": str(engine.model_id) if engine is not None else lm.model,
              "backend": "transformers" if engine is not None else "litellm",
              **{k: kwargs[k] for k in LARGE_LM_SAMPLING if kwargs.get(k) is not None}}
    # lmcot's LMs know their endpoint(s) shown (a Router keeps none in kwargs); else the keyword arguments.
    endpoint = ((lm.shown if isinstance(lm, HttpLM) else "")
                or redact(str(kwargs.get("api_base") or kwargs.get("base_url") or "")))
    return {**record, **({"api_base": endpoint} if endpoint else {})}


def weights_digest(folder: Path) -> dict[str, str]:
    """``{file name: sha256}`` of the ``*.safetensors`` files of a checkpoint folder."""
    from lmcot.keyed import file_sha256

    return {file.name: file_sha256(file) for file in sorted(Path(folder).glob("*.safetensors"))}


def check_weights(folder: Path, saved: dict[str, str]) -> None:
    """Fail when the weights in ``folder`` are not the ones saved with the program."""
    now = weights_digest(folder)
    if now != saved:
        changed = sorted(set(now) ^ set(saved) | {k for k in now.keys() & saved.keys() if now[k] != saved[k]})
        raise ModelLoadError(f"{folder}: the weights changed since this program was saved ({', '.join(changed)} "
                             f"differ from the sha256 in {PROGRAM_FILE}); restore them or compile it again")


# The predictors of LMGuidedCoT and the number of fields of each signature: all a folder's saved state
# may hold (the allow-list; tests/test_program_trust.py holds it equal to the class).
PREDICTORS = {"rationalize": 3, "answer": 4}


def read_program(path: str | Path) -> ProgramFolder:
    """The checked contents of a program folder (``lmcot.program_trust``); nothing is loaded yet."""
    folder = read_program_folder(path, PREDICTORS)
    if folder.program != "LMGuidedCoT":
        raise ProgramError(f"{folder.file}: saved program is {shown(folder.program, 80)}, not LMGuidedCoT")
    return folder


def _names(overrides: list[str] | None, *keys: str) -> bool:
    """Whether any ``--set`` override sets one of ``keys`` (dotted)."""
    return any(item.split("=", 1)[0].strip() in keys for item in overrides or [])


def program_config(path: str | Path | ProgramFolder, config: LMCoTConfig | None = None,
                   overrides: list[str] | None = None) -> LMCoTConfig:
    """The settings a program folder runs with; the small LM is always the folder's ``small_lm/``.

    ``config`` given (the user's own, ``--set`` applied): that config. Without one: lmcot's defaults,
    then what the folder defines (its small LM's decoding settings; ``eval.num_samples``,
    ``sample_temperature`` and ``select``; the large LM's model string and sampling settings unless
    ``overrides`` name ``large_lm.model``), then ``overrides``. Endpoints, keys, ``extra``, the cache,
    data and output paths are never the folder's (``lmcot.program_trust``)."""
    folder = path if isinstance(path, ProgramFolder) else read_program(path)
    if config is None:
        base = LMCoTConfig().model_dump(mode="json")
        base["small_lm"].update(folder.small_lm)
        base["eval"].update(num_samples=folder.num_samples, sample_temperature=folder.sample_temperature,
                            select=folder.select)
        suggestion = folder.suggested_large_lm()
        if suggestion and not _names(overrides, "large_lm.model", "large_lm"):
            base["large_lm"].update(suggestion)
        cfg = config_from_dict(apply_overrides(base, list(overrides or [])), source="config")
    else:
        cfg = config.model_copy(deep=True)
    if folder.metric_name and cfg.metric is None:
        log.info("%s was compiled with metric %s; pass --set metric=%s to report it again", folder.file,
                 folder.metric_name, folder.metric_name)
    cfg.small_lm.backend = "transformers"
    cfg.small_lm.model, cfg.small_lm.revision = str(folder.small_lm_dir), None
    return cfg


def large_lm_note(path: str | Path | ProgramFolder, cfg: LMCoTConfig) -> str | None:
    """One line: the large LM the program was compiled with (redacted) and the one ``cfg`` uses."""
    folder = path if isinstance(path, ProgramFolder) else read_program(path)
    record = folder.large_lm
    if not record.get("model"):
        return None

    def where(backend: str, api_base: str | None) -> str:
        if backend == "transformers":
            return " (in-process)"
        return f" at {shown(api_base)}" if api_base else " at the provider's default endpoint"

    was = f"large_lm.model={shown(record['model'])}{where(record.get('backend', 'litellm'), record.get('api_base'))}"
    large = cfg.large_lm
    now = f"large_lm.model={large.model}{where(large.backend, large.endpoint_shown() or None)}"
    note = f"program was compiled with {was}; using {now}"
    if record.get("api_base") and not large.api_base and large.backend == "litellm":
        note += (" (a program folder never sets an endpoint, key or extra setting: give large_lm.api_base in your "
                 "config or with --set)")
    return note

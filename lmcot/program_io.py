"""A compiled program is a folder:

    OUT/program.json     DSPy state of the program + the resolved config (no secrets)
    OUT/small_lm/        the trained small LM (Hugging Face checkpoint, safetensors)

``save_program`` writes ``program.json``; ``load_program`` (= ``LMGuidedCoT.load(OUT)``) rebuilds both
LMs from the saved config, API keys from the environment, and loads the DSPy state.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lmcot.config import LMCoTConfig, config_from_dict
from lmcot.jsonl import write_json

PROGRAM_FILE = "program.json"
FORMAT = "lmcot-program/1"


def _state_without_lms(program) -> dict[str, Any]:
    # The LMs are rebuilt from the config on load; keeping their state here would only duplicate it
    # (and DSPy refuses to load custom engines from state without allow_unsafe_lm_state).
    state = program.dump_state()
    for value in state.values():
        if isinstance(value, dict) and "lm" in value:
            value["lm"] = None
    return state


def save_program(program, out_dir: str | Path, config: LMCoTConfig, *, small_lm_label: str | None = None) -> Path:
    """Write ``out_dir/program.json``. ``config.small_lm.model`` may be relative to ``out_dir``
    (``small_lm``), so the folder can be moved or copied as a whole."""
    out = Path(out_dir)
    doc = {
        "format": FORMAT,
        "program": type(program).__name__,
        "num_samples": getattr(program, "num_samples", 1),
        "sample_temperature": getattr(program, "sample_temperature", 0.7),
        "small_lm_label": small_lm_label,
        "small_lm_name": getattr(getattr(program, "small_lm", None), "model", None),
        "large_lm_name": getattr(getattr(program, "large_lm", None), "model", None),
        "config": config.to_public_dict(),
        "state": _state_without_lms(program),
    }
    write_json(out / PROGRAM_FILE, doc)
    return out / PROGRAM_FILE


def read_program_file(path: str | Path) -> tuple[Path, dict[str, Any]]:
    p = Path(path)
    file = p / PROGRAM_FILE if p.is_dir() else p
    if not file.is_file():
        raise FileNotFoundError(f"{file}: no compiled program here (expected {PROGRAM_FILE})")
    doc = json.loads(file.read_text(encoding="utf-8"))
    if doc.get("format") != FORMAT:
        raise ValueError(f"{file}: not an lmcot program file (format {doc.get('format')!r})")
    return file.parent, doc


def program_config(path: str | Path) -> LMCoTConfig:
    """The saved config with ``small_lm.model`` resolved against the program folder."""
    folder, doc = read_program_file(path)
    cfg = config_from_dict(doc["config"], source=str(folder / PROGRAM_FILE))
    candidate = folder / cfg.small_lm.model
    if cfg.small_lm.backend == "transformers" and candidate.exists():
        cfg.small_lm.model = str(candidate)
    return cfg


def load_program(path: str | Path, config: LMCoTConfig | None = None):
    """Restore a compiled ``LMGuidedCoT``. ``config`` (e.g. the saved one with ``--set`` overrides, or
    the user's YAML) replaces the saved one for the large LM and ``eval.num_samples``; the small LM is
    always this folder's checkpoint."""
    from lmcot.lms import build_lm
    from lmcot.programs import LMGuidedCoT

    folder, doc = read_program_file(path)
    if doc.get("program") != "LMGuidedCoT":
        raise ValueError(f"{folder}: saved program is {doc.get('program')}, not LMGuidedCoT")
    saved = program_config(folder)
    if config is None:
        cfg, num_samples, temperature = saved, doc.get("num_samples", 1), doc.get("sample_temperature", 0.7)
    else:
        # The caller's config decides how to run (large LM, sampling), never *which* small LM: that
        # is the trained checkpoint in this folder, whatever small_lm.model the caller's YAML names.
        cfg = config.model_copy(deep=True)
        cfg.small_lm.model, cfg.small_lm.revision = saved.small_lm.model, saved.small_lm.revision
        num_samples, temperature = cfg.eval.num_samples, cfg.eval.sample_temperature
    small_lm, large_lm = build_lm(cfg.small_lm, name=doc.get("small_lm_label")), build_lm(cfg.large_lm)
    program = LMGuidedCoT(small_lm, large_lm, num_samples=num_samples, sample_temperature=temperature)
    program.load_state(doc["state"])
    # DSPy's Predict.load_state sets each predictor's LM from the state, i.e. to None here (the LMs
    # are not saved): attach the LMs rebuilt from the config again.
    program.rationalize.lm, program.answer.lm = small_lm, large_lm
    return program

"""A compiled program is a folder:

    OUT/program.json     DSPy state of the program + the resolved config (no secrets)
    OUT/small_lm/        the trained small LM (Hugging Face checkpoint, safetensors)

``save_program`` writes ``program.json``; ``load_program`` (= ``LMGuidedCoT.from_folder(OUT)``) rebuilds both
LMs from the saved config, API keys from the environment, and loads the DSPy state.

A program folder is data, not code: loading one never runs Python shipped with it. Every
``trust_remote_code`` in the saved config is reset to false (only the person loading it can turn it
on again, with ``--set small_lm.trust_remote_code=true``), and the small LM's weights must hash to
the fingerprint saved beside them (a folder whose weights were swapped fails to load).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from lmcot.config import LMCoTConfig, config_from_dict
from lmcot.errors import ModelLoadError, UserError
from lmcot.jsonl import write_json

log = logging.getLogger(__name__)

PROGRAM_FILE = "program.json"
FORMAT = "lmcot-program/1"
# The LMs whose saved trust_remote_code is ignored on load (the config's LMConfig sections).
LM_SECTIONS = ("small_lm", "large_lm", "kd.teacher", "rationale_metrics.judge")


class ProgramError(UserError, ValueError):
    """A program folder that cannot be loaded; the message names the path."""


class ProgramNotFound(UserError, FileNotFoundError):
    """No ``program.json`` where a program folder was named."""


def save_program(program, out_dir: str | Path, config: LMCoTConfig, *, small_lm_label: str | None = None) -> Path:
    """Write ``out_dir/program.json``. ``config.small_lm.model`` may be relative to ``out_dir``
    (``small_lm``), so the folder can be moved or copied as a whole."""
    from lmcot._dspy_reaches import state_without_lms

    out = Path(out_dir)
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
        # sha256 of each weights file: a folder whose weights are later swapped fails to load. Files,
        # not the engine's sampled-tensor fingerprint, so a GPU loading bfloat16 still matches.
        "small_lm_sha256": weights_digest(out / "small_lm") if (out / "small_lm").is_dir() else None,
        "small_lm_name": getattr(getattr(program, "small_lm", None), "model", None),
        "large_lm_name": getattr(getattr(program, "large_lm", None), "model", None),
        "config": config.to_public_dict(),
        # The LMs are rebuilt from the config on load; keeping their state here would only duplicate it
        # (and DSPy refuses to load custom engines from state without allow_unsafe_lm_state).
        "state": state_without_lms(program),
    }
    write_json(out / PROGRAM_FILE, doc)
    return out / PROGRAM_FILE


def weights_digest(folder: Path) -> dict[str, str]:
    """``{file name: sha256}`` of the ``*.safetensors`` files of a checkpoint folder."""
    import hashlib

    digest = {}
    for file in sorted(Path(folder).glob("*.safetensors")):
        h = hashlib.sha256()
        with file.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        digest[file.name] = h.hexdigest()
    return digest


def check_weights(folder: Path, saved: dict[str, str] | None) -> None:
    """Fail when the weights in ``folder`` are not the ones saved with the program."""
    if not saved:
        return  # a program saved before lmcot recorded digests
    now = weights_digest(folder)
    if now != saved:
        changed = sorted(set(now) ^ set(saved) | {k for k in now.keys() & saved.keys() if now[k] != saved[k]})
        raise ModelLoadError(f"{folder}: the weights changed since this program was saved ({', '.join(changed)} "
                             f"differ from the sha256 in {PROGRAM_FILE}); restore them or compile the program again")


def read_program_file(path: str | Path) -> tuple[Path, dict[str, Any]]:
    p = Path(path)
    file = p / PROGRAM_FILE if p.is_dir() else p
    if not file.is_file():
        raise ProgramNotFound(f"{file}: no compiled program here (expected {PROGRAM_FILE})")
    try:
        doc = json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        where = f" (line {exc.lineno})" if isinstance(exc, json.JSONDecodeError) else ""
        raise ProgramError(f"{file}: not valid JSON{where}; the file is damaged or truncated") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        got = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise ProgramError(f"{file}: not an lmcot program file (format {got!r})")
    for field in ("config", "state"):
        if not isinstance(doc.get(field), dict):
            raise ProgramError(f"{file}: field '{field}' is missing or not an object; the file is damaged")
    return file.parent, doc


def _lm_sections(cfg: LMCoTConfig):
    for dotted in LM_SECTIONS:
        node = cfg
        for part in dotted.split("."):
            node = getattr(node, part, None)
        if node is not None:
            yield dotted, node


def program_config(path: str | Path) -> LMCoTConfig:
    """The saved config with ``small_lm.model`` resolved against the program folder and every
    ``trust_remote_code`` reset to false (a folder never turns on running its own code)."""
    folder, doc = read_program_file(path)
    cfg = config_from_dict(doc["config"], source=str(folder / PROGRAM_FILE))
    for dotted, lm in _lm_sections(cfg):
        if lm.trust_remote_code:
            log.warning("%s asks for %s.trust_remote_code=true; ignored: a program folder never runs code by itself "
                        "(pass --set %s.trust_remote_code=true if you trust %s)", folder / PROGRAM_FILE, dotted, dotted,
                        lm.model)
            lm.trust_remote_code = False
    if cfg.small_lm.backend == "transformers":
        candidate = folder / cfg.small_lm.model
        if candidate.exists():
            cfg.small_lm.model = str(candidate)
        elif not Path(cfg.small_lm.model).is_absolute():
            raise ProgramError(f"{candidate}: missing; this program folder has no trained small LM "
                               f"({cfg.small_lm.model}/ beside {PROGRAM_FILE})")
    return cfg


def load_program(path: str | Path, config: LMCoTConfig | None = None):
    """Restore a compiled ``LMGuidedCoT``. ``config`` (e.g. the saved one with ``--set`` overrides, or
    the user's YAML) replaces the saved one for the large LM and ``eval`` (num_samples,
    sample_temperature, select); the small LM is always this folder's checkpoint."""
    from lmcot.programs.evaluation import guided_program
    from lmcot.lms import build_lm

    folder, doc = read_program_file(path)
    if doc.get("program") != "LMGuidedCoT":
        raise ProgramError(f"{folder}: saved program is {doc.get('program')}, not LMGuidedCoT")
    saved = program_config(folder)
    if config is None:
        cfg, sampling = saved, {"num_samples": doc.get("num_samples", 1),
                                "sample_temperature": doc.get("sample_temperature", 0.7),
                                "select": doc.get("select", "vote")}
    else:
        # The caller's config decides how to run (large LM, sampling), never *which* small LM: that
        # is the trained checkpoint in this folder, whatever small_lm.model the caller's YAML names.
        cfg = config.model_copy(deep=True)
        cfg.small_lm.model, cfg.small_lm.revision = saved.small_lm.model, saved.small_lm.revision
        sampling = {}  # from cfg.eval
    if cfg.small_lm.backend == "transformers" and Path(saved.small_lm.model).is_dir():
        check_weights(Path(saved.small_lm.model), doc.get("small_lm_sha256"))
    small_lm, large_lm = build_lm(cfg.small_lm, name=doc.get("small_lm_label")), build_lm(cfg.large_lm)
    # Saved before rationale forms existed: the full form, the only one there was.
    program = guided_program(small_lm, large_lm, cfg, **sampling, rationale_form=doc.get("rationale_form", "full"))
    program.load_state(doc["state"])
    # DSPy's Predict.load_state sets each predictor's LM from the state, i.e. to None here (the LMs
    # are not saved): attach the LMs rebuilt from the config again.
    program.rationalize.lm, program.answer.lm = small_lm, large_lm
    return program

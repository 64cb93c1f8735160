"""What a compiled program folder may supply: the trust boundary, in one place.

A program folder (``lmcot compile --out OUT``) is shared and downloaded like a model checkpoint, so
lmcot reads it as untrusted input. :func:`read_program_folder` checks everything in it before
anything is built, loaded or sent, and returns only what is on the allow-list below; a folder that
breaks a rule is refused with one line naming the file and the field (:class:`ProgramError`).

A folder supplies only what defines the program:

==========================  =====================================================================
``small_lm/``               the trained small LM (weights, tokenizer, ``config.json``), inside the
                            folder; every path in it resolves inside the folder (no symlink out)
``small_lm_sha256``         ``{file: sha256}`` of its ``*.safetensors``: required, checked on load
``small_lm_label``          the small LM's name in cache keys and logs (letters, digits, ``._-``)
``small_lm``                its decoding settings (``SMALL_LM_SETTINGS``)
``state``                   DSPy state of each predictor: instructions, field prefixes and
                            descriptions, demos (``PREDICTOR_STATE``); nothing else is set
``num_samples``,            how many rationales and how to pick among them (at most
``sample_temperature``,     ``MAX_NUM_SAMPLES`` samples)
``select``
``rationale_form``          the form its small LM was trained to write (``full`` | ``evidence``,
                            ``kd.rationale_form``); absent: ``full`` (folders older than forms)
``large_lm``                the large LM it was compiled with (``LARGE_LM_RECORD``): a
                            suggestion, shown on load; its ``api_base`` is a redacted record
==========================  =====================================================================

Never from a folder: endpoints (``api_base``, ``extra``, ``base_url``), keys (``api_key_env``),
timeouts and retries, ``cache_dir``, data paths (``data.*``), output paths (``eval.out``), trainer
settings, ``trust_remote_code``. Those come from the user's own config and ``--set`` only. The
folder's ``config`` is a record of the compile, never read when loading (folders written before
the ``small_lm`` / ``large_lm`` records existed lend those two from it, nothing else).

The large LM: when the user's settings name none (``--program DIR`` without ``--config`` or
``--set large_lm.model``; ``LMGuidedCoT.from_folder(DIR)`` without a config), the recorded model
string and its sampling settings are used, with lmcot's default endpoint settings; the recorded
model must be a litellm model string (an in-process reader is a path: it is only shown).
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lmcot.errors import UserError

PROGRAM_FILE = "program.json"
FORMAT = "lmcot-program/1"
SMALL_LM_DIR = "small_lm"
MAX_NUM_SAMPLES = 100  # a folder cannot make every question cost thousands of calls; --set can
SMALL_LM_SETTINGS = ("temperature", "max_tokens", "top_p", "seed", "max_input_tokens", "repetition_penalty",
                     "no_repeat_ngram_size")
LARGE_LM_SAMPLING = ("temperature", "max_tokens", "top_p", "seed")
LARGE_LM_RECORD = ("model", "backend", *LARGE_LM_SAMPLING, "api_base")
PREDICTOR_STATE = ("traces", "train", "demos", "signature", "lm")
_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
# A litellm model string: provider/name, no scheme, no spaces (``openai/gpt-4o-mini``, ``hosted_vllm/org/m:tag``).
_MODEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@/+-]{0,199}$")


class ProgramError(UserError, ValueError):
    """A program folder that cannot be loaded; the message names the path and the field."""


class ProgramNotFound(UserError, FileNotFoundError):
    """No ``program.json`` where a program folder was named."""


@dataclass(frozen=True)
class ProgramFolder:
    """The checked contents of a program folder: everything lmcot takes from it."""

    folder: Path
    program: str
    small_lm_dir: Path
    small_lm_sha256: dict[str, str]
    small_lm_label: str | None
    small_lm: dict[str, Any]
    num_samples: int
    sample_temperature: float
    select: str
    large_lm: dict[str, Any]
    state: dict[str, Any] = field(repr=False)
    # The name of the user metric it was compiled with: shown, never imported (a metric is code).
    metric_name: str | None = None
    # kd.rationale_form of its small LM; it is run in that form (saved before forms existed: full).
    rationale_form: str = "full"

    @property
    def file(self) -> Path:
        return self.folder / PROGRAM_FILE

    def suggested_large_lm(self) -> dict[str, Any] | None:
        """The recorded large LM as config values (model + sampling), or None when it cannot be used
        as a default (an in-process reader, or no usable model string)."""
        model = self.large_lm.get("model")
        if self.large_lm.get("backend", "litellm") != "litellm" or not isinstance(model, str) or not _MODEL.match(model):
            return None
        return {k: self.large_lm[k] for k in ("model", *LARGE_LM_SAMPLING) if k in self.large_lm}


def inside(folder: Path, path: Path, what: str) -> Path:
    """``path`` resolved, which must lie in ``folder`` (already resolved): no ``..``, no absolute
    path elsewhere, no symlink out."""
    resolved = path.resolve()
    if not resolved.is_relative_to(folder):
        raise ProgramError(f"{path}: {what} resolves to {resolved}, outside the program folder {folder}; a program "
                           "folder may only name files inside itself")
    return resolved


def _check_small_lm_tree(folder: Path, small_lm: Path) -> None:
    """Every entry under ``small_lm/`` stays inside the folder and is a plain file or folder (a FIFO
    or device would hang or mislead whatever reads it)."""
    for root, dirs, files in os.walk(small_lm, followlinks=False):
        for name in (*dirs, *files):
            entry = Path(root) / name
            resolved = inside(folder, entry, "a file of small_lm/")
            if not (resolved.is_file() or resolved.is_dir()):
                raise ProgramError(f"{entry}: not a regular file (or a link to nothing); a program folder holds "
                                   "plain files only")


def _fail(file: Path, key: str, problem: str) -> ProgramError:
    return ProgramError(f"{file}: {key}: {problem}")


def _validated(model_cls, values: dict[str, Any], file: Path, section: str, **fixed) -> dict[str, Any]:
    """``values`` checked against a config section's types and bounds (strictly: no "3" for 3)."""
    from pydantic import ValidationError

    try:
        model_cls.model_validate({**fixed, **values}, strict=True)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        message = first["msg"].removeprefix("Value error, ")
        raise _fail(file, f"{section}.{where}" if section else where, message) from None
    return values


def _settings(record: Any, allowed: tuple[str, ...], file: Path, section: str) -> dict[str, Any]:
    if not isinstance(record, dict):
        raise _fail(file, section, f"must be an object, not {type(record).__name__}")
    unknown = sorted(set(record) - set(allowed))
    if unknown:
        raise _fail(file, f"{section}.{unknown[0]}", f"not something a program folder may set (it may set: "
                    f"{', '.join(allowed)})")
    return {k: v for k, v in record.items() if v is not None}


def _check_sha256(value: Any, file: Path, small_lm: Path) -> dict[str, str]:
    key = "small_lm_sha256"
    if value is None:
        raise _fail(file, key, "missing; the small LM's weights cannot be checked, so the folder is refused "
                    "(compile it again)")
    if not isinstance(value, dict) or not value:
        raise _fail(file, key, "must be an object {file: sha256} naming the small LM's weights")
    for name, digest in value.items():
        if (not isinstance(name, str) or Path(name).name != name or not name.endswith(".safetensors")
                or name.startswith(".")):
            raise _fail(file, key, f"{str(name)[:80]!r} is not a weights file name in small_lm/")
        if not isinstance(digest, str) or not _SHA256.match(digest):
            raise _fail(file, f"{key}.{name}", "not a sha256 (64 lower-case hex digits)")
    present = sorted(p.name for p in small_lm.glob("*.safetensors"))
    if present != sorted(value):
        raise _fail(file, key, f"names {sorted(value)}, but small_lm/ holds {present}; the folder is incomplete "
                    "or was changed")
    return dict(value)


def _check_json_value(value: Any, file: Path, key: str, depth: int = 0) -> None:
    if depth > 20:
        raise _fail(file, key, "nested too deeply")
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise _fail(file, key, "keys must be strings")
            _check_json_value(v, file, f"{key}.{k}", depth + 1)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _check_json_value(v, file, f"{key}[{i}]", depth + 1)
    elif isinstance(value, float) and not math.isfinite(value):
        raise _fail(file, key, "not a finite number")
    elif not isinstance(value, (str, int, float, bool, type(None))):
        raise _fail(file, key, f"unexpected {type(value).__name__}")


def _check_state(state: Any, predictors: dict[str, int], file: Path) -> dict[str, Any]:
    """The DSPy state of each predictor, held to what a folder may set. DSPy's ``Predict.load_state``
    sets *every* key it is given as an attribute (``config`` would become the LM call's keyword
    arguments: an ``api_base`` of the folder's choosing), so only ``PREDICTOR_STATE`` passes."""
    if not isinstance(state, dict):
        raise _fail(file, "state", f"must be an object, not {type(state).__name__}")
    if set(state) != set(predictors):
        raise _fail(file, "state", f"has predictors {sorted(state)}, the program has {sorted(predictors)}")
    clean: dict[str, Any] = {}
    for name, n_fields in predictors.items():
        key = f"state.{name}"
        entry = state[name]
        if not isinstance(entry, dict):
            raise _fail(file, key, f"must be an object, not {type(entry).__name__}")
        extra = sorted(set(entry) - set(PREDICTOR_STATE))
        if extra:
            raise _fail(file, f"{key}.{extra[0]}", "not something a program folder may set (it may set: "
                        f"{', '.join(PREDICTOR_STATE)})")
        if entry.get("lm") is not None:
            raise _fail(file, f"{key}.lm", "must be null: the LMs come from your config, never from the folder")
        signature = entry.get("signature")
        if not isinstance(signature, dict) or set(signature) - {"instructions", "fields"}:
            raise _fail(file, f"{key}.signature", "must be an object with instructions and fields only")
        if not isinstance(signature.get("instructions"), str):
            raise _fail(file, f"{key}.signature.instructions", "must be a string")
        fields = signature.get("fields")
        if not isinstance(fields, list) or len(fields) != n_fields:
            raise _fail(file, f"{key}.signature.fields", f"must be a list of {n_fields} fields")
        for i, item in enumerate(fields):
            if (not isinstance(item, dict) or set(item) != {"prefix", "description"}
                    or not all(isinstance(v, str) for v in item.values())):
                raise _fail(file, f"{key}.signature.fields[{i}]", "must be {\"prefix\": str, \"description\": str}")
        for part in ("traces", "train", "demos"):
            if not isinstance(entry.get(part, []), list):
                raise _fail(file, f"{key}.{part}", "must be a list")
            _check_json_value(entry.get(part, []), file, f"{key}.{part}")
        if not all(isinstance(d, dict) for d in entry.get("demos", [])):
            raise _fail(file, f"{key}.demos", "each demo must be an object of field values")
        clean[name] = {"traces": entry.get("traces", []), "train": entry.get("train", []),
                       "demos": entry.get("demos", []), "signature": signature, "lm": None}
    return clean


def read_document(path: str | Path) -> tuple[Path, dict[str, Any]]:
    """``(folder, program.json as a dict)`` with the format checked; nothing else is trusted yet."""
    p = Path(path)
    file = p / PROGRAM_FILE if p.is_dir() else p
    if file.is_file() and file.suffix != ".json":  # a config or data file passed by mistake: not "damaged"
        raise ProgramNotFound(f"{file}: a file, not a compiled program (expected the folder of `lmcot compile "
                              f"--out`, or its {PROGRAM_FILE})")
    if not file.is_file():
        raise ProgramNotFound(f"{file}: no compiled program here (expected {PROGRAM_FILE})")
    folder = file.parent.resolve()
    inside(folder, file, PROGRAM_FILE)
    try:
        doc = json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        where = f" (line {exc.lineno})" if isinstance(exc, json.JSONDecodeError) else ""
        raise ProgramError(f"{file}: not valid JSON{where}; the file is damaged or truncated") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        got = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise ProgramError(f"{file}: not an lmcot program file (format {got!r})")
    return folder, doc


def read_program_folder(path: str | Path, predictors: dict[str, int]) -> ProgramFolder:
    """Check a program folder against the rules above and return what it supplies. ``predictors``:
    the program's predictor names and how many fields each signature has. Reads ``program.json`` and
    lists ``small_lm/``; loads nothing, hashes nothing (``check_weights`` does, before loading)."""
    from lmcot.aspects import parse_select
    from lmcot.config import EvalConfig, LargeLMConfig, SmallLMConfig

    folder, doc = read_document(path)
    file = folder / PROGRAM_FILE
    for key in ("config", "state"):
        if not isinstance(doc.get(key), dict):
            raise _fail(file, key, "missing or not an object; the file is damaged")
    saved = doc["config"]
    legacy_small = saved.get("small_lm") if isinstance(saved.get("small_lm"), dict) else {}
    legacy_large = saved.get("large_lm") if isinstance(saved.get("large_lm"), dict) else {}
    # The one path a folder names: where its small LM is. Anything but its own small_lm/ is refused.
    named = legacy_small.get("model", SMALL_LM_DIR)
    if (legacy_small.get("backend", "transformers") != "transformers" or not isinstance(named, str)
            or (Path(named).resolve() if Path(named).is_absolute() else (folder / named).resolve())
            != (folder / SMALL_LM_DIR).resolve()):
        raise _fail(file, "config.small_lm.model", f"{str(named)[:200]!r}: a program's small LM is the folder's own "
                    f"{SMALL_LM_DIR}/ (in-process weights), nothing else")
    small_dir = folder / SMALL_LM_DIR
    if not small_dir.is_dir():
        raise ProgramError(f"{small_dir}: missing; this program folder has no trained small LM ({SMALL_LM_DIR}/ beside "
                           f"{PROGRAM_FILE})")
    small_dir = inside(folder, small_dir, f"{SMALL_LM_DIR}/")
    _check_small_lm_tree(folder, small_dir)
    sha = _check_sha256(doc.get("small_lm_sha256"), file, small_dir)

    label = doc.get("small_lm_label")
    if label is not None and (not isinstance(label, str) or not _LABEL.match(label)):
        raise _fail(file, "small_lm_label", "must be a short name (letters, digits, '.', '_', '-')")
    if "small_lm" in doc:
        small = _settings(doc["small_lm"], SMALL_LM_SETTINGS, file, "small_lm")
    else:  # written before the record existed
        small = {k: legacy_small[k] for k in SMALL_LM_SETTINGS if legacy_small.get(k) is not None}
    _validated(SmallLMConfig, small, file, "small_lm", model=SMALL_LM_DIR, backend="transformers")

    sampling = {k: doc.get(k, default) for k, default in
                (("num_samples", 1), ("sample_temperature", 0.7), ("select", "vote"))}
    _validated(EvalConfig, sampling, file, "")
    if sampling["num_samples"] > MAX_NUM_SAMPLES:
        raise _fail(file, "num_samples", f"{sampling['num_samples']} is more than a program folder may ask for "
                    f"({MAX_NUM_SAMPLES}); set eval.num_samples yourself to run more")
    parse_select(sampling["select"])
    from lmcot.config import KDConfig

    rationale_form = doc.get("rationale_form", "full")
    _validated(KDConfig, {"rationale_form": rationale_form}, file, "")

    if "large_lm" in doc:
        large = _settings(doc["large_lm"], LARGE_LM_RECORD, file, "large_lm")
    else:
        large = {k: legacy_large[k] for k in LARGE_LM_RECORD if legacy_large.get(k) is not None}
    if large:
        if not isinstance(large.get("model"), str) or not large["model"].strip():
            raise _fail(file, "large_lm.model", "must be a non-empty string")
        if not isinstance(large.get("api_base", ""), str):
            raise _fail(file, "large_lm.api_base", "must be a string (a record, never used)")
        checked = {k: v for k, v in large.items() if k in LARGE_LM_SAMPLING or k == "backend"}
        _validated(LargeLMConfig, checked, file, "large_lm", model="x")

    program = doc.get("program")
    if not isinstance(program, str):
        raise _fail(file, "program", "missing")
    return ProgramFolder(folder=folder, program=program, small_lm_dir=small_dir, small_lm_sha256=sha,
                         small_lm_label=label, small_lm=small, num_samples=sampling["num_samples"],
                         sample_temperature=float(sampling["sample_temperature"]), select=sampling["select"],
                         large_lm=large, state=_check_state(doc["state"], predictors, file),
                         metric_name=shown(doc["metric_name"], 200) if isinstance(doc.get("metric_name"), str) else None,
                         rationale_form=rationale_form)


def shown(text: Any, limit: int = 200) -> str:
    """A value from a folder, safe to print: URL credentials redacted, no control characters, bounded."""
    from lmcot.redact import redact

    cleaned = "".join(c if c.isprintable() else "?" for c in redact(str(text)))
    return cleaned if len(cleaned) <= limit else cleaned[:limit] + "..."

"""Scoring a JSONL file of rationales on the eight aspects: the work behind ``lmcot score``.

    rows, means = run_score(load_config("c.yaml"), Path("rationales.jsonl"), Path("scores.jsonl"))
    backends = score_backends(config)   # per aspect: judge, reference LM, embeddings or lexical

Each input line is a JSON object with ``question``, ``rationale`` and ``context`` (the formatted
``"Title: s1 s2"`` lines; ``paragraphs`` ``[[title, [sentences]]]`` may stand in for it or come
with it), and optionally ``id``. ``lmcot evaluate``'s ``predictions.jsonl`` can be scored as it is:
its rows name a dev example (``id``) instead of carrying the context, which is looked up in the dev
set of the config (``data.dev``), else of the ``config.json`` that evaluate wrote beside the file
(:func:`dev_contexts`); rows without a rationale (standard prompting, failed predictions) are
skipped; scores keep ``method``. The judge LM is built only when some aspect is configured to use
it. The reference LM for fluency/naturalness is ``rationale_metrics.reference_lm`` (``lexical`` asks
for the lexical proxy, e.g. for a student without pretrained weights), else the small LM when that
is an in-process causal transformers model, else none (the lexical proxy; see
``lmcot.metrics.rationale.cheap``). Without ``--config`` the small LM is the one of the run that
wrote the file (:func:`choose_scorer`): nothing is fetched from the hub for it, and ``lmcot score``
says which scorer it used and why.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmcot.config import ASPECTS, LMCoTConfig, config_from_dict
from lmcot.errors import UserError

from .scorer import ReferenceLM

if TYPE_CHECKING:
    from lmcot.model_loading import ModelSource

__all__ = ["ScoreInputError", "choose_scorer", "dev_contexts", "read_rationale_rows", "run_score", "score_backends"]

log = logging.getLogger(__name__)


class ScoreInputError(UserError, ValueError):
    """A rationale file that cannot be scored; the one-line message names the file, line and field."""


def read_rationale_rows(path: Path, contexts: Callable[[], Mapping[str, Mapping[str, Any]] | None] | None = None,
                        ) -> list[dict[str, Any]]:
    """Rows of ``path``; blank lines are skipped, anything else must be a complete row. A row with an
    ``id`` but no context gets ``context`` and ``paragraphs`` from ``contexts()`` (called once, only if
    needed; see :func:`dev_contexts`); a row of ``predictions.jsonl`` (it has ``method``) with no
    rationale is skipped."""
    path = Path(path)
    if not path.is_file():
        raise ScoreInputError(f"{path}: no such file")
    from lmcot.jsonl import parse_jsonl

    parsed = []
    # Bytes, decoded line by line, so a line that is not UTF-8 is named.
    for lineno, row, error in parse_jsonl(path.read_bytes()):
        if error:
            raise ScoreInputError(f"{path}: line {lineno}: {error}")
        if not isinstance(row, dict):
            raise ScoreInputError(f"{path}: line {lineno}: expected a JSON object")
        parsed.append((lineno, row))
    rows = _complete_rows(path, parsed, contexts)
    if not rows:
        raise ScoreInputError(f"{path}: nothing to score (no row with a rationale)")
    return rows


def _complete_rows(path: Path, parsed: list[tuple[int, dict[str, Any]]],
                   contexts: Callable[[], Mapping[str, Mapping[str, Any]] | None] | None) -> list[dict[str, Any]]:
    rows, lookup, without_rationale = [], None, 0
    for lineno, row in parsed:
        if "method" in row and row.get("rationale") is None:
            without_rationale += 1  # standard prompting writes no rationale; a failed prediction has none
            continue
        if "context" not in row and "paragraphs" not in row and row.get("id") is not None and contexts is not None:
            if lookup is None:
                lookup = contexts() or {}
            row = {**row, **lookup.get(str(row["id"]), {})}
        missing = [k for k in ("question", "rationale") if k not in row]
        if "context" not in row and "paragraphs" not in row:
            missing.append("context")
        if missing:
            hint = ""
            if missing[0] == "context" and "method" in row:
                hint = (f" (id {row.get('id')!r}: predictions.jsonl rows carry no context; keep the config.json "
                        "that lmcot evaluate wrote beside the file, or pass the --config whose data.dev they "
                        "came from)")
            raise ScoreInputError(f"{path}: line {lineno}: missing field '{missing[0]}'{hint}")
        for key in ("question", "rationale", "context"):
            if key in row and not isinstance(row[key], str):
                raise ScoreInputError(f"{path}: line {lineno}: field '{key}' must be a string")
        rows.append(row)
    if without_rationale:
        log.warning("%s: skipped %d row(s) with no rationale (standard prompting writes none)", path, without_rationale)
    return rows


def dev_contexts(config: LMCoTConfig, rationales_path: Path) -> dict[str, dict[str, Any]] | None:
    """``{id: {"context", "paragraphs"}}`` of the dev set named by ``config.data.dev``, else by the
    ``config.json`` beside ``rationales_path`` (what ``lmcot evaluate`` writes next to its predictions),
    truncated as that evaluation truncated it, so a rationale is scored against the context it was
    written from. None when neither names a dev set."""
    source = config
    if not config.data.dev:
        sibling = Path(rationales_path).parent / "config.json"
        if not sibling.is_file():
            return None
        try:
            data = json.loads(sibling.read_text(encoding="utf-8"))
            data.pop("program", None)  # evaluate records the program folder beside the config
            source = config_from_dict(data, source=str(sibling))
        except (ValueError, AttributeError) as exc:
            log.warning("%s is not an lmcot evaluate config (%s); no contexts from it", sibling, exc)
            return None
        if not source.data.dev:
            return None
    from lmcot.splits import load_split

    examples = load_split(source, "dev")
    # paragraphs only where the task has them (HotpotQA); a context-free task's context is ""
    return {str(ex.id): {"context": ex.get("context") or "",
                         **({"paragraphs": ex.paragraphs} if ex.get("paragraphs") else {})} for ex in examples}


def choose_scorer(config: LMCoTConfig, rationales_path: Path, *, explicit: bool,
                  program_config: Callable[[str], LMCoTConfig]) -> tuple[LMCoTConfig, ReferenceLM, str]:
    """``(config to score with, reference LM or None for the lexical proxy, why)``.

    With ``--config`` (``explicit``) or a ``--set small_lm...``, its small LM. Without, the small LM
    of the run that wrote the file: the program named in the ``config.json`` lmcot evaluate wrote
    beside it (``evaluate --program``; read with ``program_config``, i.e.
    ``lmcot.programs.program_io.program_config``, a layer above this one), else that config.json's
    own small LM. With neither, no small LM is named and the lexical proxy is used (nothing is fetched
    from the hub on a guess), unless ``rationale_metrics.reference_lm`` names a model. Either way
    ``why`` says which and why."""
    from lmcot.config import config_changes

    from .scorer import choose_reference_lm

    path = Path(rationales_path)
    set_small = any(k.startswith("small_lm.") for k in config_changes(config))
    source = "--config" if explicit else "--set small_lm..." if set_small else None
    if source is None and not config.rationale_metrics.reference_lm:
        found = _small_lm_beside(path, program_config)
        if found is None:
            return config, None, (f"no --config, and no config.json of lmcot evaluate beside {path.name} names the small "
                                  "LM that wrote it (pass --config C.yaml, or --set rationale_metrics.reference_lm=MODEL, "
                                  "for perplexity)")
        small, source = found
        config = config.model_copy(update={"small_lm": small}, deep=True)
    reference, why = choose_reference_lm(config)
    return config, reference, f"{why}, from {source}" if source else why


def _small_lm_beside(path: Path, program_config: Callable[[str], LMCoTConfig]):
    """``(small_lm config, where it came from)`` of the run whose config.json sits beside ``path``."""
    sibling = path.parent / "config.json"
    if not sibling.is_file():
        return None
    try:
        data = json.loads(sibling.read_text(encoding="utf-8"))
        program = data.pop("program", None)
        if program and (Path(program) / "program.json").is_file():
            small = program_config(program).small_lm  # resolves small_lm/ against the program folder
            where = f"the program {program} that wrote {path.name} (named in {sibling})"
        else:
            small = config_from_dict(data, source=str(sibling)).small_lm
            where = f"{sibling}, the config of the run that wrote {path.name}"
    except (ValueError, AttributeError, UserError) as exc:
        log.warning("%s is not an lmcot evaluate config (%s); no small LM from it", sibling, exc)
        return None
    small.trust_remote_code = False  # a file beside the data never turns on running a model's code
    return small, where


def run_score(config: LMCoTConfig, rationales_path: Path, out_path: Path | None = None,
              progress: bool = False, reference: tuple[ReferenceLM, str] | None = None,
              sources: dict[str, ModelSource] | None = None) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Score every row of ``rationales_path``; write ``{id, question, <8 aspects>}`` per row to
    ``out_path`` (atomically, when given). Returns those rows and the per-aspect means.
    ``reference``: ``(reference LM or None, why)`` as :func:`choose_scorer` chose it (default: from
    ``config``, a fallback to the lexical proxy logged with its reason). ``sources``: in-process models
    the checks resolved, by role (an in-process judge is built from its own)."""
    from contextlib import nullcontext

    from lmcot.jsonl import atomic_write_text
    from lmcot.lms import cache_in
    from lmcot.aspects import LM_ASPECTS
    from .scorer import LEXICAL, reference_lm_for, scorer_from_config, summarize

    rows = read_rationale_rows(rationales_path, contexts=lambda: dev_contexts(config, rationales_path))
    metrics = config.rationale_metrics
    judged = any(metrics.backends[a] == "judge" for a in ASPECTS)
    # The judge's calls are cached (DSPy's global cache as it was, after); cheap scorers call no LM.
    with cache_in(config.cache_dir) if judged else nullcontext():
        needs_lm = any(metrics.backends[a] == "cheap" for a in LM_ASPECTS)
        if not needs_lm:
            reference_lm = None
        elif reference is not None:
            reference_lm = reference[0]
        else:
            reference_lm = reference_lm_for(config)
        # "lexical" (not None): None would let the scorer fall back to rationale_metrics.reference_lm.
        scorer = scorer_from_config(config, reference_lm=reference_lm or LEXICAL, sources=sources)
        scores = scorer.score(rows, ASPECTS, progress=progress)
        out_rows = [{"id": row.get("id"), "question": row["question"],
                     **({"method": row["method"]} if "method" in row else {}), **s} for row, s in zip(rows, scores)]
        if out_path is not None:
            atomic_write_text(out_path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in out_rows))
        return out_rows, summarize(scores)


def score_backends(config: LMCoTConfig, reference: tuple[ReferenceLM, str] | None = None) -> dict[str, str]:
    """Per aspect, what ``run_score`` uses: ``judge``, ``reference LM``, ``embeddings`` or ``lexical``."""
    from .scorer import LEXICAL, backend_name, reference_lm_for

    model = reference_lm_for(config, quiet=True) if reference is None else reference[0]
    return {a: backend_name(config.rationale_metrics, a, model or LEXICAL) for a in ASPECTS}

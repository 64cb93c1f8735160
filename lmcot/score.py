"""``lmcot score``: rate rationales from a JSONL file on the eight aspects.

    rows, means = run_score(load_config("c.yaml"), Path("rationales.jsonl"), Path("scores.jsonl"))
    Console().print(render_score_table(means))

Each input line is a JSON object with ``question``, ``rationale`` and ``context`` (the formatted
``"Title: s1 s2"`` lines; ``paragraphs`` ``[[title, [sentences]]]`` may stand in for it or come
with it), and optionally ``id``. The judge LM is built only when some aspect is configured to use
it. The reference LM for fluency/naturalness is ``rationale_metrics.reference_lm``, else the small
LM when that is an in-process causal transformers model that is not a tiny random-init one, else
none (the lexical proxy; see ``lmcot.metrics.rationale.cheap``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lmcot.config import ASPECTS, LMCoTConfig

__all__ = [
    "ScoreInputError", "read_rationale_rows", "reference_lm_for", "render_score_table", "run_score", "score_backends",
]

log = logging.getLogger(__name__)


class ScoreInputError(ValueError):
    """A rationale file that cannot be scored; the one-line message names the file, line and field."""


def read_rationale_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of ``path``; blank lines are skipped, anything else must be a complete row."""
    path = Path(path)
    if not path.is_file():
        raise ScoreInputError(f"{path}: no such file")
    rows = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ScoreInputError(f"{path}: line {lineno}: invalid JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise ScoreInputError(f"{path}: line {lineno}: expected a JSON object")
            missing = [k for k in ("question", "rationale") if k not in row]
            if "context" not in row and "paragraphs" not in row:
                missing.append("context")
            if missing:
                raise ScoreInputError(f"{path}: line {lineno}: missing field '{missing[0]}'")
            for key in ("question", "rationale", "context"):
                if key in row and not isinstance(row[key], str):
                    raise ScoreInputError(f"{path}: line {lineno}: field '{key}' must be a string")
            rows.append(row)
    return rows


def _is_causal_checkpoint(model: str, trust_remote_code: bool = False) -> bool:
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(model, trust_remote_code=trust_remote_code)
    return not getattr(cfg, "is_encoder_decoder", False)


def reference_lm_for(config: LMCoTConfig, quiet: bool = False) -> str | None:
    """The reference LM for perplexity (module docstring), or None for the lexical proxy; the
    reason for a fallback is logged as a warning unless ``quiet``."""
    warn = log.debug if quiet else log.warning
    if config.rationale_metrics.reference_lm:
        return config.rationale_metrics.reference_lm
    small = config.small_lm
    if small.backend != "transformers":
        return None
    from lmcot.tiny import is_tiny

    if is_tiny(small.model):
        # Random weights give meaningless perplexities: the lexical proxy is the better fallback.
        warn("small LM %s is a tiny random-init model: fluency/naturalness use the lexical proxy "
                    "(set rationale_metrics.reference_lm for perplexity)", small.model)
        return None
    try:
        if _is_causal_checkpoint(small.model, small.trust_remote_code):
            return small.model
    except Exception as exc:  # an unreachable hub id, a broken folder: fall back, loudly
        warn("cannot read small LM %s for perplexity (%s): fluency/naturalness use the lexical proxy",
                    small.model, exc)
        return None
    log.info("small LM %s is encoder-decoder: fluency/naturalness use the lexical proxy", small.model)
    return None


def run_score(config: LMCoTConfig, rationales_path: Path, out_path: Path | None = None,
              progress: bool = False) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Score every row of ``rationales_path``; write ``{id, question, <8 aspects>}`` per row to
    ``out_path`` (atomically, when given). Returns those rows and the per-aspect means."""
    from lmcot.jsonl import atomic_write_text
    from lmcot.metrics.rationale import RationaleScorer, summarize

    rows = read_rationale_rows(rationales_path)
    metrics = config.rationale_metrics
    judge_lm = None
    if any(metrics.backends[a] == "judge" for a in ASPECTS):
        from lmcot.lms import build_lm, configure_cache

        configure_cache(config.cache_dir)
        judge_lm = build_lm(config.judge())
    needs_lm = any(metrics.backends[a] == "cheap" for a in ("fluency", "naturalness"))
    reference = reference_lm_for(config) if needs_lm else None
    scorer = RationaleScorer(metrics, judge_lm=judge_lm, reference_lm=reference)
    scores = scorer.score(rows, ASPECTS, progress=progress)
    out_rows = [{"id": row.get("id"), "question": row["question"], **s} for row, s in zip(rows, scores)]
    if out_path is not None:
        atomic_write_text(out_path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in out_rows))
    return out_rows, summarize(scores)


def score_backends(config: LMCoTConfig) -> dict[str, str]:
    """Per aspect, what ``run_score`` uses: ``judge``, ``reference LM``, ``embeddings`` or ``lexical``."""
    from lmcot.metrics.rationale import backend_name

    reference = reference_lm_for(config, quiet=True)
    return {a: backend_name(config.rationale_metrics, a, reference) for a in ASPECTS}


def render_score_table(means: Mapping[str, float], backends: Mapping[str, str] | None = None):
    """A rich table: aspect, definition, mean (and the backend used, when ``backends`` is given)."""
    from rich.table import Table

    from lmcot.metrics.rationale import ASPECT_DEFINITIONS

    table = Table(title="Rationale quality (0-1, higher is better)")
    table.add_column("aspect", style="bold")
    table.add_column("definition")
    if backends is not None:
        table.add_column("backend")
    table.add_column("mean", justify="right")
    for aspect in ASPECTS:
        if aspect not in means:
            continue
        cells = [aspect, ASPECT_DEFINITIONS[aspect]]
        if backends is not None:
            cells.append(backends.get(aspect, ""))
        table.add_row(*cells, f"{means[aspect]:.3f}")
    return table

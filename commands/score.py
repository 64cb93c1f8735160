"""``lmcot score``: rate rationales from a JSONL file on the eight aspects.

    rows, means = run_score(load_config("c.yaml"), Path("rationales.jsonl"), Path("scores.jsonl"))
    Console().print(render_score_table(means))

Each input line is a JSON object with ``question``, ``rationale`` and ``context`` (the formatted
``"Title: s1 s2"`` lines; ``paragraphs`` ``[[title, [sentences]]]`` may stand in for it or come
with it), and optionally ``id``. ``lmcot evaluate``'s ``predictions.jsonl`` can be scored as it is:
its rows name a dev example (``id``) instead of carrying the context, which is looked up in the dev
set of the config (``data.dev``), else of the ``config.json`` that evaluate wrote beside the file;
rows without a rationale (standard prompting, failed predictions) are skipped; scores keep
``method``. The judge LM is built only when some aspect is configured to use it. The reference LM
for fluency/naturalness is ``rationale_metrics.reference_lm`` (``lexical`` asks for the lexical
proxy, e.g. for a student without pretrained weights), else the small LM when that is an in-process
causal transformers model, else none (the lexical proxy; see ``lmcot.metrics.rationale.cheap``).
Without ``--config`` the small LM is the one of the run that wrote the file (:func:`choose_scorer`):
nothing is fetched from the hub for it, and the command says which scorer it used and why.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from lmcot.config import ASPECTS, LMCoTConfig, config_from_dict
from lmcot.errors import UserError


def main(rationales: Path, config: Path | None, overrides: list[str], *, out: Path | None, verbose: bool) -> None:
    """``lmcot score``: check everything, score every row, print one table per method."""
    from rich.text import Text

    from lmcot.commands.common import check_endpoints, check_local, guard, load, show_config
    from lmcot.console import say, table_console
    from lmcot.metrics.rationale import check_scorer_models, reference_name, summarize
    from lmcot.metrics.rationale.cheap import LM_ASPECTS
    from lmcot.errors import PathError

    with guard(verbose, "nothing written; the judge calls that finished are cached, so a rerun does not pay for "
               "them again") as places:
        cfg = load(config, overrides)
        places.update({"--out": out or rationales.parent, "cache_dir": cfg.cache_dir})
        show_config(cfg, verbose)
        out_path = out or rationales.with_suffix(".scores.jsonl")
        if out_path.is_dir():
            raise PathError(f"{out_path}: --out must be a file (per-row scores JSONL), but it is a folder")
        judged = "judge" in cfg.rationale_metrics.backends.values()
        judge_key = "rationale_metrics.judge" if cfg.rationale_metrics.judge else "large_lm"
        check_local(cfg, out_path.parent, roles=("rationale_metrics.judge",) if judged else ())
        check_scorer_models(cfg.rationale_metrics)
        check_endpoints(cfg, (judge_key,) if judged else ())
        # Which model reads the rationales for fluency / naturalness, and why: never a silent fallback.
        cfg, reference, why = choose_scorer(cfg, rationales, explicit=config is not None)
        if any(cfg.rationale_metrics.backends[a] == "cheap" for a in LM_ASPECTS):
            by = f"perplexity under {reference_name(reference)}" if reference else "the lexical proxy"
            say("scorer:", "bold", f"fluency and naturalness by {by}: {why}")
        rows, means = run_score(cfg, rationales, out_path, progress=True, reference=(reference, why))
    backends = score_backends(cfg, (reference, why))
    methods = list(dict.fromkeys(r["method"] for r in rows if "method" in r))
    if len(methods) > 1:  # a predictions.jsonl: CoT prompting's and the small LM's rationales apart
        for method in methods:
            table_console().print(render_score_table(summarize([r for r in rows if r.get("method") == method]),
                                                     backends=backends,
                                                     title=Text(f"Rationale quality of {method} (0-1)")))
    else:
        table_console().print(render_score_table(means, backends=backends))
    say("", "", f"wrote {out_path}")

__all__ = [
    "ScoreInputError", "choose_scorer", "dev_contexts", "read_rationale_rows", "render_score_table", "run_score",
    "score_backends",
]

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


def choose_scorer(config: LMCoTConfig, rationales_path: Path, *, explicit: bool) -> tuple[LMCoTConfig, str | None, str]:
    """``(config to score with, reference LM or None for the lexical proxy, why)``.

    With ``--config`` (``explicit``) or a ``--set small_lm...``, its small LM. Without, the small LM
    of the run that wrote the file: the program named in the ``config.json`` lmcot evaluate wrote
    beside it (``evaluate --program``), else that config.json's own small LM. With neither, no small
    LM is named and the lexical proxy is used (nothing is fetched from the hub on a guess), unless
    ``rationale_metrics.reference_lm`` names a model. Either way ``why`` says which and why."""
    from lmcot.config import config_changes
    from lmcot.metrics.rationale import choose_reference_lm

    path = Path(rationales_path)
    set_small = any(k.startswith("small_lm.") for k in config_changes(config))
    source = "--config" if explicit else "--set small_lm..." if set_small else None
    if source is None and not config.rationale_metrics.reference_lm:
        found = _small_lm_beside(path)
        if found is None:
            return config, None, (f"no --config, and no config.json of lmcot evaluate beside {path.name} names the small "
                                  "LM that wrote it (pass --config C.yaml, or --set rationale_metrics.reference_lm=MODEL, "
                                  "for perplexity)")
        small, source = found
        config = config.model_copy(update={"small_lm": small}, deep=True)
    reference, why = choose_reference_lm(config)
    return config, reference, f"{why}, from {source}" if source else why


def _small_lm_beside(path: Path):
    """``(small_lm config, where it came from)`` of the run whose config.json sits beside ``path``."""
    sibling = path.parent / "config.json"
    if not sibling.is_file():
        return None
    try:
        data = json.loads(sibling.read_text(encoding="utf-8"))
        program = data.pop("program", None)
        if program and (Path(program) / "program.json").is_file():
            from lmcot.programs.program_io import program_config

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
              progress: bool = False, reference: tuple[str | None, str] | None = None,
              ) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Score every row of ``rationales_path``; write ``{id, question, <8 aspects>}`` per row to
    ``out_path`` (atomically, when given). Returns those rows and the per-aspect means.
    ``reference``: ``(reference LM or None, why)`` as :func:`choose_scorer` chose it (default: from
    ``config``, a fallback to the lexical proxy logged with its reason)."""
    from contextlib import nullcontext

    from lmcot.jsonl import atomic_write_text
    from lmcot.lms import cache_in
    from lmcot.metrics.rationale import LEXICAL, reference_lm_for, scorer_from_config, summarize
    from lmcot.metrics.rationale.cheap import LM_ASPECTS

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
        scorer = scorer_from_config(config, reference_lm=reference_lm or LEXICAL)
        scores = scorer.score(rows, ASPECTS, progress=progress)
        out_rows = [{"id": row.get("id"), "question": row["question"],
                     **({"method": row["method"]} if "method" in row else {}), **s} for row, s in zip(rows, scores)]
        if out_path is not None:
            atomic_write_text(out_path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in out_rows))
        return out_rows, summarize(scores)


def score_backends(config: LMCoTConfig, reference: tuple[str | None, str] | None = None) -> dict[str, str]:
    """Per aspect, what ``run_score`` uses: ``judge``, ``reference LM``, ``embeddings`` or ``lexical``."""
    from lmcot.metrics.rationale import LEXICAL, backend_name, reference_lm_for

    model = reference_lm_for(config, quiet=True) if reference is None else reference[0]
    return {a: backend_name(config.rationale_metrics, a, model or LEXICAL) for a in ASPECTS}


def render_score_table(means: Mapping[str, float], backends: Mapping[str, str] | None = None,
                       title: str = "Rationale quality (0-1, higher is better)"):
    """A rich table: aspect, definition, mean (and the backend used, when ``backends`` is given)."""
    from rich.table import Table

    from lmcot.metrics.rationale import ASPECT_DEFINITIONS

    table = Table(title=title)
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
        table.add_row(*cells, "n/a" if means[aspect] is None else f"{means[aspect]:.3f}")  # n/a: no passage
    return table

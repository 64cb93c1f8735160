"""``lmcot score``: rate rationales from a JSONL file on the eight aspects.

    lmcot score --rationales runs/eval/predictions.jsonl            # the small LM of the run that wrote it
    lmcot score --rationales rationales.jsonl --config c.yaml --out scores.jsonl

Writes one ``{id, question, <8 aspects>}`` line per row (``--out``, default ``FILE.scores.jsonl``) and
prints the per-aspect means, one table per method for evaluate's ``predictions.jsonl``. A thin layer
over the library: ``lmcot.metrics.rationale.score_file`` does the work (input format, contexts, which
reference LM reads the rationales and why).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from lmcot.config import ASPECTS


def main(rationales: Path, config: Path | None, overrides: list[str], *, out: Path | None, verbose: bool) -> None:
    """``lmcot score``: check everything, score every row, print one table per method."""
    from rich.text import Text

    from lmcot.aspects import LM_ASPECTS
    from lmcot.commands.common import guard, load, show_config
    from lmcot.console import say, table_console
    from lmcot.errors import PathError
    from lmcot.metrics.rationale import check_scorer_models, reference_name, summarize
    from lmcot.metrics.rationale.score_file import choose_scorer, run_score, score_backends
    from lmcot.preflight import check_endpoints, check_local
    from lmcot.programs.program_io import program_config

    with guard(verbose, "nothing written; the judge calls that finished are cached, so a rerun does not pay for "
               "them again") as places:
        cfg = load(config, overrides)
        places.update({"--out": out or rationales.parent, "cache_dir": cfg.cache_dir})
        show_config(cfg, verbose)
        out_path = out or rationales.with_suffix(".scores.jsonl")
        if out_path.is_dir():
            raise PathError(f"{out_path}: --out must be a file (per-row scores JSONL), but it is a folder")
        if not rationales.is_file():  # before a scorer is chosen and announced for a file that is not there
            raise PathError(f"{rationales}: no such file (--rationales)")
        judged = "judge" in cfg.rationale_metrics.backends.values()
        judge_key = cfg.judge_role()
        sources = check_local(cfg, out_path.parent, roles=(judge_key,) if judged else ())
        check_scorer_models(cfg.rationale_metrics)
        check_endpoints(cfg, (judge_key,) if judged else ())
        # Which model reads the rationales for fluency / naturalness, and why: never a silent fallback.
        cfg, reference, why = choose_scorer(cfg, rationales, explicit=config is not None,
                                            program_config=program_config)
        if any(cfg.rationale_metrics.backends[a] == "cheap" for a in LM_ASPECTS):
            by = f"perplexity under {reference_name(reference)}" if reference else "the lexical proxy"
            say("scorer:", "bold", f"fluency and naturalness by {by}: {why}")
        rows, means = run_score(cfg, rationales, out_path, progress=True, reference=(reference, why), sources=sources)
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

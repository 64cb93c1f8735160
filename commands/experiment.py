"""``lmcot experiment`` (the paper's analyses in one run, then the report) and ``lmcot report``
(re-render the report from ``OUT/results.json``, no LM call). The work is ``lmcot.experiment``'s.

    lmcot experiment --config configs/experiment-quickstart.yaml --out runs/exp
    lmcot report runs/exp
"""

from __future__ import annotations

from pathlib import Path


def main(config: Path | None, overrides: list[str], *, out: Path, verbose: bool) -> None:
    from lmcot.commands.common import guard, prepare
    from lmcot.console import say
    from lmcot.experiment.grid import students_needed
    from lmcot.experiment.report import render
    from lmcot.experiment.run import run_experiment
    from lmcot.experiment.students import training_config
    from lmcot.metrics.rationale import check_scorer_models
    from lmcot.optimizers.preflight import preflight_training
    from lmcot.preflight import check_endpoints, check_local
    from lmcot.run_lock import output_lock

    with guard(verbose, f"finished steps ({out}/steps/), trained students and cached LM calls are kept; rerun the "
               "same command to resume") as places:
        cfg = prepare(config, overrides, out=out, places=places, verbose=verbose)
        sources = check_local(cfg, out, roles=("small_lm", "large_lm", "kd.teacher", "rationale_metrics.judge"))
        training = training_config(cfg, students_needed(cfg.experiment, main_form=cfg.kd.rationale_form))
        if training.stages:  # the students' trainer settings as training builds them, and free disk space
            preflight_training(training, training.small_lm, out, source=sources.get("small_lm"))
        check_scorer_models(cfg.rationale_metrics)
        check_endpoints(cfg, ("large_lm", "kd.teacher", "rationale_metrics.judge"))
        with output_lock(out, "lmcot experiment"):
            run_experiment(cfg, out, sources=sources)
            paths = render(out)
    print_methods_table(out)
    say("", "", f"wrote {out}/results.json, {paths['md']}, {paths['html']}, {paths['plots']}/")


def report(out: Path, *, verbose: bool) -> None:
    from lmcot.commands.common import guard
    from lmcot.console import say
    from lmcot.experiment.report import render

    with guard(verbose, "the report may be half written; run the same command again", lm_calls=False) as places:
        places["OUT"] = out
        paths = render(out)
    say("", "", f"wrote {paths['md']}, {paths['html']}, {paths['plots']}/")


def print_methods_table(out: Path) -> None:
    """The report's main table in the terminal (from the tables.json the report wrote)."""
    import json

    from rich.table import Table
    from rich.text import Text

    from lmcot.console import table_console

    t = json.loads((out / "tables.json").read_text(encoding="utf-8"))["methods"]
    # The answer columns are the task's (EM/F1 for spans, one accuracy for numbers and labels, the user metric).
    keep = [c for c in t["columns"] if "95% CI" not in c and c not in ("prompt tok", "completion tok")]
    table = Table(title=t["title"])
    for col in keep:
        table.add_column(col, justify="left" if col == "method" else "right")
    for row in t["rows"]:
        table.add_row(*(Text(row[t["columns"].index(c)]) for c in keep))
    table_console().print(table)

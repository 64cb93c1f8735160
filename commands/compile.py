"""``lmcot compile``: bootstrap teacher rationales, distil them into the small LM, then RL; save a
compiled program folder (``lmcot.optimizers.compiler.compile_from_config`` does the work).

    lmcot compile --config configs/quickstart.yaml --out runs/quickstart [--stages kd,rl] [--set key=value]
"""

from __future__ import annotations

from pathlib import Path


def main(config: Path | None, overrides: list[str], *, out: Path, verbose: bool) -> None:
    from lmcot.commands.common import guard, prepare
    from lmcot.console import say, table_console
    from lmcot.optimizers.compiler import compile_from_config
    from lmcot.optimizers.dev_report import report_table
    from lmcot.optimizers.preflight import preflight_training
    from lmcot.preflight import check_endpoints, check_local
    from lmcot.run_lock import output_lock

    with guard(verbose, f"finished stages, teacher traces ({out}/kd/traces.jsonl), training checkpoints and cached "
               "LM calls are kept; rerun the same command to resume") as places:
        cfg = prepare(config, overrides, out=out, places=places, verbose=verbose)
        endpoints = ("large_lm", *(["kd.teacher"] if "kd" in cfg.stages else []),
                     *(["rationale_metrics.judge"] if "rl" in cfg.stages else []))
        sources = check_local(cfg, out, roles=("small_lm", "large_lm", "kd.teacher", "rationale_metrics.judge"))
        if cfg.stages:  # the stages' trainer settings as training builds them, and free disk space
            preflight_training(cfg, cfg.small_lm, out, source=sources.get("small_lm"))
        check_endpoints(cfg, endpoints)
        with output_lock(out, "lmcot compile"):
            report = compile_from_config(cfg, out, sources=sources)
    if any(k in report for k in ("untrained", "compiled")):
        table_console().print(report_table(report))
    say("", "", f"compiled program: {out}  (evaluate it with: lmcot evaluate --program {out} --config ...)")

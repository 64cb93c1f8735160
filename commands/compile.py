"""``lmcot compile``: bootstrap teacher rationales, distil them into the small LM, then RL; save a
compiled program folder (``lmcot.optimizers.compiler.compile_from_config`` does the work).

    lmcot compile --config configs/quickstart.yaml --out runs/quickstart [--stages kd,rl] [--set key=value]
"""

from __future__ import annotations

from pathlib import Path


def main(config: Path | None, overrides: list[str], *, out: Path, verbose: bool) -> None:
    from lmcot.commands.common import check_before_calls, guard, prepare
    from lmcot.console import say, table_console
    from lmcot.optimizers.compiler import compile_from_config
    from lmcot.optimizers.dev_report import report_table
    from lmcot.run_lock import output_lock

    with guard(verbose, f"finished stages, teacher traces ({out}/kd/traces.jsonl), training checkpoints and cached "
               "LM calls are kept; rerun the same command to resume") as places:
        cfg = prepare(config, overrides, out=out, places=places, verbose=verbose)
        endpoints = ("large_lm", *(["kd.teacher"] if "kd" in cfg.stages else []),
                     *(["rationale_metrics.judge"] if "rl" in cfg.stages else []))
        sources = check_before_calls(cfg, out, roles=("small_lm", "large_lm", "kd.teacher", "rationale_metrics.judge"),
                                     training_cfg=cfg, endpoints=endpoints)
        with output_lock(out, "lmcot compile"):
            report = compile_from_config(cfg, out, sources=sources)
    if any(k in report for k in ("untrained", "compiled")):
        table_console().print(report_table(report))
    say("", "", f"compiled program: {out}  (evaluate it with: lmcot evaluate --program {out} --config ...)")

"""``lmcot evaluate``: LM-guided CoT against the paper's two baselines on a dev set.

    lmcot evaluate --config configs/quickstart.yaml --methods standard,cot,guided --limit 50 --out runs/eval
    lmcot evaluate --program runs/quickstart            # a compiled program folder

Writes ``OUT/predictions.jsonl`` (one line per example and method), ``OUT/metrics.json``
(``{method: {"em", "f1", "n", ...}}``) and ``OUT/config.json`` (the resolved config, no secrets).
Large-LM calls go through DSPy's disk cache, so a rerun makes no new paid call. A thin layer over
the library: ``lmcot.programs.evaluation.evaluate_from_config`` does the work.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def main(config: Path | None, overrides: list[str], *, methods: str | None, limit: int | None, out: Path | None,
         program: Path | None, verbose: bool) -> None:
    """``lmcot evaluate``: read and check everything, then evaluate, write and print the table."""
    from lmcot.commands.common import guard, load, methods_arg, show_config
    from lmcot.console import say, table_console
    from lmcot.metrics.rationale import check_scorer_models
    from lmcot.preflight import check_endpoints, check_local
    from lmcot.programs.evaluation import evaluate_from_config
    from lmcot.run_lock import output_lock

    with guard(verbose, "nothing written; the LM calls that finished are cached, so a rerun does not pay for them "
               "again") as places:
        cfg = load(config, overrides, program)
        method_list = methods_arg(methods)  # the command's arguments, like the config, before the network
        if program is not None and config is None and not cfg.data.dev:
            from lmcot.config import ConfigError

            raise ConfigError("config: data.dev is not set: a program folder never supplies data paths "
                              "(lmcot.program_trust); pass the task's --config or --set data.dev=...")
        out_dir = out or Path(cfg.eval.out)
        places["--out"], places["cache_dir"] = out_dir, cfg.cache_dir
        show_config(cfg, verbose, out_dir / "config.json")
        chosen = method_list if method_list is not None else cfg.eval.methods
        # The small LM writes guided rationales, and its tokenizer counts every method's context.
        small = program is None and ("guided" in chosen or cfg.data.max_context_tokens is not None)
        roles = ["small_lm", "large_lm"] if small else ["large_lm"]
        # Picking among sampled rationales by quality scores them: the scorer's models and judge count too.
        scored = "guided" in chosen and cfg.eval.select != "vote"
        judge = [cfg.judge_role()] if scored and "judge" in cfg.rationale_metrics.backends.values() else []
        endpoints = tuple(dict.fromkeys(["large_lm", *judge]))
        sources = check_local(cfg, out_dir, roles=tuple(dict.fromkeys(roles + judge)))
        if scored:
            check_scorer_models(cfg.rationale_metrics)
        check_endpoints(cfg, endpoints)
        with output_lock(out_dir, "lmcot evaluate"):
            metrics = evaluate_from_config(cfg, methods=method_list, out_dir=out_dir, limit=limit, program_dir=program,
                                           sources=sources)
    table_console().print(metrics_table(metrics))
    say("", "", f"wrote {out_dir}/metrics.json, {out_dir}/predictions.jsonl, {out_dir}/config.json")


def metrics_table(metrics: dict[str, Any], title: str = "dev results"):
    """A rich table per method: EM / F1 / n, then the large LM's calls, tokens and list-price dollars
    and the small LM's generate seconds, each by lmcot.usage's rule (calls answered from the cache
    count what they used when paid, and say how much of it was cached)."""
    from rich.table import Table

    from lmcot.usage import network_usage

    first = next(iter(metrics.values()), {})
    extra = [c for c, key in (("metric", "metric"), ("off-label", "off_label")) if key in first]
    kind = first.get("answer_type", "span")
    if kind != "span":  # say what EM means for this task; F1 equals EM for numbers and labels
        title = f"{title} (answers: {kind}; F1 = EM)"
    if "metric_name" in first:
        title = f"{title}; metric = {first['metric_name']}"
    table = Table(title=title)
    for col in ("method", "EM", "F1", *extra, "n", "errors", "large-LM calls", "tokens", "cost ($)", "small-LM s"):
        table.add_column(col, justify="left" if col == "method" else "right")
    for method, m in metrics.items():
        large = network_usage(m.get("usage", {}))
        cost = large["cost"]
        more = [f"{m['metric']:.3f}" if c == "metric" else str(m.get("off_label", 0)) for c in extra]
        table.add_row(method, f"{m['em']:.3f}", f"{m['f1']:.3f}", *more, str(m["n"]), str(m.get("errors", 0)),
                      f"{large['calls']}" + _cached(large["cached_calls"]),
                      f"{large['tokens']}" + _cached(large["cached_tokens"]),
                      "n/a" if cost is None else f"{cost:.4f}",
                      f"{m.get('usage', {}).get('small_lm_seconds', 0.0):.1f}")
    return table


def _cached(n: int) -> str:
    return f" ({n} cached)" if n else ""


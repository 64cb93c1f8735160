"""``lmcot evaluate``: LM-guided CoT against the paper's two baselines on a dev set.

    lmcot evaluate --config configs/quickstart.yaml --methods standard,cot,guided --limit 50 --out runs/eval
    lmcot evaluate --program runs/quickstart            # a compiled program folder

Writes ``OUT/predictions.jsonl`` (one line per example and method), ``OUT/metrics.json``
(``{method: {"em", "f1", "n", ...}}``) and ``OUT/config.json`` (the resolved config, no secrets).
Large-LM calls go through DSPy's disk cache, so a rerun makes no new paid call. A thin layer over
the library: examples from ``lmcot.splits``, the loop from ``lmcot.programs.evaluation``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import dspy

from lmcot.config import LMCoTConfig
from lmcot.jsonl import atomic_write_text, write_json
from lmcot.model_loading import ModelSource


def main(config: Path | None, overrides: list[str], *, methods: str | None, limit: int | None, out: Path | None,
         program: Path | None, verbose: bool) -> None:
    """``lmcot evaluate``: read and check everything, then evaluate, write and print the table."""
    from lmcot.commands.common import check_before_calls, guard, load, methods_arg, show_config
    from lmcot.console import say, table_console
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
        places.update({"--out": out_dir, "cache_dir": cfg.cache_dir})
        show_config(cfg, verbose, out_dir / "config.json")
        chosen = method_list if method_list is not None else cfg.eval.methods
        # The small LM writes guided rationales, and its tokenizer counts every method's context.
        small = program is None and ("guided" in chosen or cfg.data.max_context_tokens is not None)
        sources = check_before_calls(cfg, out_dir, roles=("small_lm", "large_lm") if small else ("large_lm",))
        with output_lock(out_dir, "lmcot evaluate"):
            metrics = run_evaluate(cfg, methods=method_list, out_dir=out_dir, limit=limit, program_dir=program,
                                   sources=sources)
    table_console().print(metrics_table(metrics))
    say("", "", f"wrote {out_dir}/metrics.json, {out_dir}/predictions.jsonl, {out_dir}/config.json")


def run_evaluate(config: LMCoTConfig, *, methods: list[str] | None = None, out_dir: str | Path | None = None,
                 limit: int | None = None, program_dir: str | Path | None = None, progress: bool = True,
                 examples: list[dspy.Example] | None = None,
                 sources: dict[str, ModelSource] | None = None) -> dict[str, Any]:
    """Evaluate ``methods`` on the dev set; returns the metrics dict that is written to metrics.json.
    ``sources``: in-process models already resolved, by role (what ``lmcot.preflight.check_config_models``
    returns), so the LMs and the token counter are built from them instead of resolving them again."""
    from lmcot.programs.evaluation import check_methods, evaluate_methods
    from lmcot.lms import build_lms, cache_in
    from lmcot.programs import LMGuidedCoT
    from lmcot.splits import load_split

    methods = check_methods(methods if methods is not None else config.eval.methods)
    out = Path(out_dir or config.eval.out)
    from lmcot.preflight import check_cache_dir, check_out_dir

    check_out_dir(out)  # before any paid call, not when the results are written
    check_cache_dir(config.cache_dir)
    with cache_in(config.cache_dir):  # DSPy's global cache as it was, after the run
        guided = None
        if program_dir is not None and "guided" in methods:
            guided = LMGuidedCoT.from_folder(program_dir, config)
            small_lm, large_lm = guided.small_lm, guided.large_lm
        else:
            lms = build_lms(config, ("small_lm", "large_lm") if "guided" in methods else ("large_lm",),
                            sources=sources)
            small_lm, large_lm = lms.get("small_lm"), lms["large_lm"]
        if examples is None:
            # Contexts are counted with the small LM's tokenizer: the LM's, else its model resolved above.
            counter = small_lm if small_lm is not None else (sources or {}).get("small_lm")
            examples = load_split(config, "dev", limit=limit, small_lm=counter)
        elif limit is not None:
            examples = examples[:limit]

        from lmcot.run_lock import output_lock

        with output_lock(out, "run_evaluate"):  # a second run on this folder fails at once, before any call
            all_rows, metrics = evaluate_methods(config, methods, examples, small_lm, large_lm, guided=guided,
                                                 progress=progress)
            atomic_write_text(out / "predictions.jsonl",
                              "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in all_rows))
            write_json(out / "metrics.json", metrics)
            write_json(out / "config.json", {**config.to_public_dict(), "program": str(program_dir) if program_dir else None})
        return metrics


def metrics_table(metrics: dict[str, Any], title: str = "dev results"):
    """A rich table per method: EM / F1 / n, then the large LM's calls, tokens and list-price dollars
    and the small LM's generate seconds, each by lmcot.usage's rule (calls answered from the cache
    count what they used when paid, and say how much of it was cached)."""
    from rich.table import Table

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
        large = _large_lm_usage(m.get("usage", {}))
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


def _large_lm_usage(usage: dict[str, Any]) -> dict[str, Any]:
    """Calls, tokens and dollars of the models reached over the network (in-process ones cost seconds)."""
    parts = [p for p in usage.get("by_model", {}).values() if not p.get("in_process")]
    costs = [p.get("cost") for p in parts if p.get("calls")]
    return {"calls": sum(p["calls"] for p in parts), "cached_calls": sum(p["cached_calls"] for p in parts),
            "tokens": sum(p["prompt_tokens"] + p["completion_tokens"] for p in parts),
            "cached_tokens": sum(p.get("cached_tokens", 0) for p in parts),
            "cost": None if any(c is None for c in costs) else float(sum(costs))}

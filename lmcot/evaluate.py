"""``lmcot evaluate``: LM-guided CoT against the paper's two baselines on a dev set.

    lmcot evaluate --config configs/quickstart.yaml --methods standard,cot,guided --limit 50 --out runs/eval
    lmcot evaluate --program runs/quickstart            # a compiled program folder

Writes ``OUT/predictions.jsonl`` (one line per example and method), ``OUT/metrics.json``
(``{method: {"em", "f1", "n", ...}}``) and ``OUT/config.json`` (the resolved config, no secrets).
Large-LM calls go through DSPy's disk cache, so a rerun makes no new paid call.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from contextvars import copy_context
from pathlib import Path
from typing import Any, Callable

import dspy

from lmcot.config import ConfigError, LMCoTConfig
from lmcot.errors import RunError
from lmcot.jsonl import atomic_write_text, write_json
from lmcot.usage import UsageMeter

log = logging.getLogger(__name__)

METHODS = ("standard", "cot", "guided")


def context_token_counter(config: LMCoTConfig, small_lm: dspy.LM | None = None) -> Callable[[str], int] | None:
    """Count context tokens with the small LM's tokenizer (the tighter reader, e.g. FLAN-T5's 512),
    so every method sees the same truncated context. ``None`` means the approximate word counter."""
    from lmcot.lms import hf_engine_of

    engine = hf_engine_of(small_lm) if small_lm is not None else None
    if engine is not None:
        tok = engine.tokenizer
    elif config.small_lm.backend == "transformers":
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(config.small_lm.model,
                                            trust_remote_code=config.small_lm.trust_remote_code)
    else:
        return None
    return lambda text: len(tok(text, add_special_tokens=False).input_ids)


def load_split(config: LMCoTConfig, split: str, limit: int | None = None,
               count_tokens: Callable[[str], int] | None = None) -> list[dspy.Example]:
    """The ``train`` or ``dev`` examples named in ``config.data``."""
    from lmcot.data import DataError, load_examples

    source = getattr(config.data, split)
    if not source:
        raise DataError(f"config: data.{split} is not set (a hub split such as 'validation' or a local JSON/JSONL file)")
    limit = limit if limit is not None else getattr(config.data, f"{split}_limit")
    result = load_examples(config.data.dataset, source, limit=limit, skip_bad=config.data.skip_bad,
                           max_context_tokens=config.data.max_context_tokens, count_tokens=count_tokens,
                           hub_id=config.data.hub_id)
    if result.skipped:
        log.warning("%s: skipped %d malformed record(s) (--skip-bad)", source, result.skipped)
    return _repeated_ids(result.examples, source, drop=config.data.skip_bad)


def _repeated_ids(examples: list[dspy.Example], source: str, *, drop: bool) -> list[dspy.Example]:
    """A repeated id would be scored (and paid for) twice and weigh twice in the means: warn, and with
    --skip-bad (``data.skip_bad``) keep only the first of each."""
    seen: set[str] = set()
    first: list[dspy.Example] = []
    for ex in examples:
        if str(ex.id) not in seen:
            seen.add(str(ex.id))
            first.append(ex)
    repeats = len(examples) - len(first)
    if not repeats:
        return examples
    if drop:
        log.warning("%s: dropped %d record(s) whose id repeats an earlier one (--skip-bad)", source, repeats)
        return first
    log.warning("%s: %d record(s) repeat an earlier id and are counted again; --skip-bad drops the repeats",
                source, repeats)
    return examples


def predict_all(program: dspy.Module, examples: list[dspy.Example], *, concurrency: int, label: str,
                progress: bool = True) -> list[dict[str, Any]]:
    """Run ``program`` on every example (``concurrency`` threads, rich progress bar). A failed example
    is recorded with its error and scores 0, as ``dspy.Evaluate`` does, rather than stopping the run."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from lmcot.metrics import answer_em, answer_f1

    def run_one(ex: dspy.Example) -> dict[str, Any]:
        row: dict[str, Any] = {"id": ex.id, "method": label, "question": ex.question, "gold": ex.answer}
        try:
            pred = program(**ex.inputs())
            row["answer"] = pred.answer
            for key in ("rationale", "rationales", "answers"):
                if key in pred.keys():
                    row[key] = pred[key]
            row["error"] = None
        except Exception as exc:  # noqa: BLE001 - recorded per example, summarised at the end
            from lmcot.redact import redact

            row.update(answer="", error=redact(f"{type(exc).__name__}: {exc}"))
        row["em"], row["f1"] = answer_em(row["answer"], ex.answer), answer_f1(row["answer"], ex.answer)
        return row

    rows: list[dict[str, Any] | None] = [None] * len(examples)
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    pool = ThreadPoolExecutor(max_workers=max(1, concurrency))
    try:
        with Progress(*columns, disable=not progress, transient=False) as bar:
            task = bar.add_task(label, total=len(examples))
            futures = {pool.submit(copy_context().run, run_one, ex): i for i, ex in enumerate(examples)}
            for future, i in futures.items():
                rows[i] = future.result()
                bar.advance(task)
    finally:
        # Ctrl-C: examples not yet started are dropped instead of calling (and paying for) the LMs.
        pool.shutdown(wait=True, cancel_futures=True)
    return [r for r in rows if r is not None]


def build_program(method: str, small_lm: dspy.LM | None, large_lm: dspy.LM, config: LMCoTConfig):
    from lmcot.programs import CoTPrompting, LMGuidedCoT, StandardPrompting

    if method == "standard":
        return StandardPrompting(large_lm)
    if method == "cot":
        return CoTPrompting(large_lm)
    if method == "guided":
        return LMGuidedCoT(small_lm, large_lm, num_samples=config.eval.num_samples,
                           sample_temperature=config.eval.sample_temperature)
    raise ConfigError(f"unknown method {method!r}; methods are {', '.join(METHODS)}")


def evaluate(config: LMCoTConfig, *, methods: list[str] | None = None, out_dir: str | Path | None = None,
             limit: int | None = None, program_dir: str | Path | None = None, progress: bool = True,
             examples: list[dspy.Example] | None = None) -> dict[str, Any]:
    """Evaluate ``methods`` on the dev set; returns the metrics dict that is written to metrics.json."""
    from lmcot.lms import build_lm, configure_cache
    from lmcot.metrics import aggregate
    from lmcot.program_io import load_program

    methods = list(methods or config.eval.methods)
    for m in methods:
        if m not in METHODS:
            raise ConfigError(f"unknown method {m!r}; methods are {', '.join(METHODS)}")
    out = Path(out_dir or config.eval.out)
    from lmcot.preflight import check_cache_dir, check_out_dir

    check_out_dir(out)  # before any paid call, not when the results are written
    check_cache_dir(config.cache_dir)
    configure_cache(config.cache_dir)

    guided = None
    if program_dir is not None and "guided" in methods:
        guided = load_program(program_dir, config)
        small_lm, large_lm = guided.small_lm, guided.large_lm
    else:
        small_lm = build_lm(config.small_lm) if "guided" in methods else None
        large_lm = build_lm(config.large_lm)
    if examples is None:
        examples = load_split(config, "dev", limit=limit, count_tokens=context_token_counter(config, small_lm))
    elif limit is not None:
        examples = examples[:limit]

    all_rows: list[dict[str, Any]] = []
    metrics: dict[str, Any] = {}
    for method in methods:
        program = guided if (method == "guided" and guided is not None) else build_program(method, small_lm, large_lm, config)
        meter = UsageMeter([small_lm, large_lm])
        start = time.perf_counter()
        rows = predict_all(program, examples, concurrency=config.eval.concurrency, label=method, progress=progress)
        usage = meter.report()
        errors = sum(1 for r in rows if r["error"])
        if errors == len(rows):
            raise RunError(f"{method}: every example failed; first error: {rows[0]['error']}")
        metrics[method] = {**aggregate(rows), "errors": errors, "seconds": round(time.perf_counter() - start, 2),
                           "usage": usage}
        all_rows.extend(rows)

    out.mkdir(parents=True, exist_ok=True)
    import json

    atomic_write_text(out / "predictions.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in all_rows))
    write_json(out / "metrics.json", metrics)
    write_json(out / "config.json", {**config.to_public_dict(), "program": str(program_dir) if program_dir else None})
    return metrics


def metrics_table(metrics: dict[str, Any], title: str = "dev results"):
    """A rich table of EM / F1 / n / tokens / cost per method."""
    from rich.table import Table

    table = Table(title=title)
    for col in ("method", "EM", "F1", "n", "errors", "calls", "tokens", "cost ($)"):
        table.add_column(col, justify="left" if col == "method" else "right")
    for method, m in metrics.items():
        usage = m.get("usage", {})
        cost = usage.get("cost")
        table.add_row(method, f"{m['em']:.3f}", f"{m['f1']:.3f}", str(m["n"]), str(m.get("errors", 0)),
                      f"{usage.get('calls', 0)}" + (f" ({usage['cached_calls']} cached)" if usage.get("cached_calls") else ""),
                      str(usage.get("prompt_tokens", 0) + usage.get("completion_tokens", 0)),
                      "n/a" if cost is None else f"{cost:.4f}")
    return table

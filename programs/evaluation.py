"""The evaluation loop: run a program on examples and measure it; and ``lmcot evaluate``'s whole run.

    rows, summary = evaluate_program(program, devset, metric=my_metric)     # any dspy.Example list
    rows, summary = evaluate_program(program, devset, concurrency=8, label="guided", lms=[small, large], task=task)
    rows, metrics = evaluate_methods(config, ["standard", "cot", "guided"], devset, small_lm, large_lm)
    metrics = evaluate_from_config(config, out_dir="runs/eval")     # what `lmcot evaluate` runs: files written

Answers are scored by the task's ``TaskMetric`` (``data.answer_type``, ``data.labels``, the user metric):
``em``, ``f1`` and, when they apply, ``metric`` and ``off_label`` per row and in the summary.

:func:`evaluate_from_config` is what ``lmcot evaluate`` runs (the LMs built, the dev split read, every
method evaluated, predictions / metrics / config written); the compiler measures the small LM before
and after training with ``evaluate_program``.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import dspy

from lmcot.config import ConfigError, LMCoTConfig
from lmcot.errors import RunError
from lmcot.usage import UsageMeter

if TYPE_CHECKING:
    from lmcot.model_loading import ModelSource

METHODS = ("standard", "cot", "guided")


def check_methods(methods: Sequence[str]) -> list[str]:
    methods = list(methods)
    if not methods:  # an empty selection is a mistake, never "all of them"
        raise ConfigError(f"no method to evaluate; methods are {', '.join(METHODS)}")
    for m in methods:
        if m not in METHODS:
            raise ConfigError(f"unknown method {m!r}; methods are {', '.join(METHODS)}")
    return methods


def build_program(method: str, small_lm: dspy.LM | None, large_lm: dspy.LM, config: LMCoTConfig, *,
                  sources: dict[str, ModelSource] | None = None):
    """The program of one method; ``sources``: in-process models the checks resolved (a guided program's judge)."""
    from lmcot.programs import CoTPrompting, LMGuidedCoT, StandardPrompting

    if method == "standard":
        return StandardPrompting(large_lm)
    if method == "cot":
        return CoTPrompting(large_lm)
    if method == "guided":
        return LMGuidedCoT.from_config(small_lm, large_lm, config, sources=sources)
    raise ConfigError(f"unknown method {method!r}; methods are {', '.join(METHODS)}")


def rationale_workers(program: dspy.Module, concurrency: int) -> int:
    """Threads for the rationale phase: enough that an in-process small LM always has a full batch
    queued behind the one it is generating (two batches' worth), else the run's concurrency."""
    from lmcot.hf_engine import hf_engine_of

    engine = hf_engine_of(program.small_lm) if getattr(program, "small_lm", None) is not None else None
    return max(concurrency, 2 * engine.batch_size) if engine is not None else concurrency


def predict_all(program: dspy.Module, examples: list[dspy.Example], *, concurrency: int = 8, label: str = "program",
                progress: bool = True, task: Any = None) -> list[dict[str, Any]]:
    """Run ``program`` on every example (``concurrency`` threads, rich progress bar). A failed example
    is recorded with its error and scores 0, as ``dspy.Evaluate`` does, rather than stopping the run.

    A program with ``rationales_for`` / ``answer_from`` (LMGuidedCoT) runs in two phases: every
    rationale is requested at once, and each example's answer starts (``concurrency`` at a time) as
    soon as its rationales are written. Interleaving one small-LM and one large-LM call per thread
    would keep the small LM's batches small and the large-LM calls waiting behind them; phased, the
    small LM sees every request at once and the large LM works while it generates. The calls (and
    so the results and cache entries) are the same as ``forward``'s. Each row is scored by ``task`` (a
    ``TaskMetric``; default: span EM/F1)."""
    from lmcot.metrics.task_metric import TaskMetric
    from lmcot.console import progress_bar
    from lmcot.parallel import ContextPool, map_concurrently

    phased = hasattr(program, "rationales_for") and hasattr(program, "answer_from")
    task = task or TaskMetric()

    def run_one(item: tuple[dspy.Example, Any]) -> dict[str, Any]:
        ex, rationales = item
        row: dict[str, Any] = {"id": ex.id, "method": label, "question": ex.question, "gold": ex.answer}
        pred = None
        try:
            if isinstance(rationales, Exception):
                raise rationales
            pred = (program.answer_from(ex.question, ex.get("context"), rationales) if phased
                    else program(**ex.inputs()))
            row["answer"] = pred.answer
            for key in ("rationale", "rationales", "answers", "scores", "selected"):
                if key in pred.keys():
                    row[key] = pred[key]
            row["error"] = None
        except Exception as exc:  # noqa: BLE001 - recorded per example, summarised at the end
            from lmcot.redact import redact

            row.update(answer="", error=redact(f"{type(exc).__name__}: {exc}"))
            if getattr(exc, "rationales", None):  # AnswerCallError: the rationale was written
                row.update(rationale=exc.rationales[0], rationales=exc.rationales)
        if row["error"] is None:
            row.update(task.score(row["answer"], ex, pred))
        else:  # a failed example scores 0 (the user's metric is not asked about an answer that does not exist)
            row.update(em=0.0, f1=0.0, **({"metric": 0.0} if task.metric is not None else {}))
        return row

    with progress_bar(label, disable=not progress) as bar:
        if not phased:
            done_bar = bar.add_task(label, total=len(examples))
            return map_concurrently(run_one, [(ex, None) for ex in examples], max(1, concurrency),
                                    on_result=lambda _: bar.advance(done_bar))
        phase = bar.add_task(f"{label}: rationales", total=len(examples))
        done_bar = bar.add_task(label, total=len(examples))
        futures: list[Future | None] = [None] * len(examples)
        # Leaving the block on Ctrl-C drops the answers not yet started rather than run (and pay for) them.
        with ContextPool(max_workers=max(1, concurrency)) as answers:

            def rationales_ready(i: int, rationales: Any) -> None:
                bar.advance(phase)
                futures[i] = answers.submit(run_one, (examples[i], rationales))
                futures[i].add_done_callback(lambda _: bar.advance(done_bar))

            program.rationales_for(examples, max_workers=rationale_workers(program, max(1, concurrency)),
                                   on_done=rationales_ready)
            return [f.result() for f in futures]


def evaluate_program(program: dspy.Module, examples: list[dspy.Example], *, concurrency: int = 8,
                     label: str = "program", progress: bool = True, lms: Sequence[dspy.LM | None] = (),
                     what: str | None = None, metric: Any = None, task: Any = None,
                     ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Per-example rows and their summary ``{"em", "f1", "n", "errors", "seconds", "usage"}`` (usage of
    the ``lms`` during this run), plus ``metric`` (mean of the user metric) and ``off_label`` (labels
    outside ``data.labels``) when they apply. ``examples``: any ``dspy.Example`` list with question and
    answer (ids and an empty context are filled in). Scoring: ``task`` (a ``TaskMetric``), else span
    EM/F1 with ``metric`` (a DSPy metric function or ``"module:function"``) beside them.
    Raises when every example failed (an unreachable LM, a bad key): the numbers would only measure the
    outage. ``what`` names the run in that error (default ``label``)."""
    from lmcot.custom_data import prepare_examples
    from lmcot.metrics.task_metric import TaskMetric
    from lmcot.metrics.user_metric import as_user_metric

    task = task or TaskMetric(metric=as_user_metric(metric))
    examples = prepare_examples(list(examples), task.answer_type, task.labels, what="devset")
    if task.metric is not None and examples:
        task.metric.check_on(examples[0])  # before the first LM call
    meter = UsageMeter(list(lms))
    start = time.perf_counter()
    rows = predict_all(program, examples, concurrency=concurrency, label=label, progress=progress, task=task)
    failed = [r["error"] for r in rows if r["error"]]
    if rows and len(failed) == len(rows):
        raise RunError(f"{what or label}: every example failed; first error: {failed[0]}")
    return rows, {**summarize_rows(rows, task), "errors": len(failed),
                  "seconds": round(time.perf_counter() - start, 2), "usage": meter.report()}


def summarize_rows(rows: list[dict[str, Any]], task: Any = None) -> dict[str, Any]:
    """Mean em / f1 (and ``metric``) over scored rows, ``n``, ``off_label`` (count) for label tasks, and
    ``answer_type`` / ``metric_name`` so a reader of metrics.json knows what the numbers are."""
    from lmcot.metrics import aggregate

    out: dict[str, Any] = aggregate(rows)
    if task is not None:
        out["answer_type"] = task.answer_type
        if task.metric is not None:
            out["metric"] = sum(float(r.get("metric") or 0.0) for r in rows) / len(rows) if rows else 0.0
            out["metric_name"] = task.metric.name
        if task.labels is not None:
            out["off_label"] = sum(1 for r in rows if r.get("off_label"))
    return out


def evaluate_methods(config: LMCoTConfig, methods: Sequence[str], examples: list[dspy.Example],
                     small_lm: dspy.LM | None, large_lm: dspy.LM, *, guided: dspy.Module | None = None,
                     progress: bool = True, task: Any = None, sources: dict[str, ModelSource] | None = None,
                     ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Each method on ``examples``: all rows, and ``{method: summary}``. ``guided`` replaces the
    LM-guided program built from ``small_lm`` (e.g. a compiled one). ``task``: the ``TaskMetric``
    (default: from the config). ``sources``: in-process models the checks resolved (see :func:`build_program`)."""
    from lmcot.metrics.task_metric import TaskMetric

    task = task or TaskMetric.from_config(config)
    all_rows: list[dict[str, Any]] = []
    metrics: dict[str, Any] = {}
    for method in check_methods(methods):
        program = (guided if (method == "guided" and guided is not None)
                   else build_program(method, small_lm, large_lm, config, sources=sources))
        rows, metrics[method] = evaluate_program(program, examples, concurrency=config.eval.concurrency, label=method,
                                                 progress=progress, lms=[small_lm, large_lm], task=task)
        all_rows.extend(rows)
    return all_rows, metrics


def evaluate_from_config(config: LMCoTConfig, *, methods: list[str] | None = None, out_dir: str | Path | None = None,
                         limit: int | None = None, program_dir: str | Path | None = None, progress: bool = True,
                         examples: list[dspy.Example] | None = None,
                         sources: dict[str, ModelSource] | None = None) -> dict[str, Any]:
    """What ``lmcot evaluate`` runs: ``methods`` (default ``eval.methods``) on the dev split (or
    ``examples``), ``program_dir``'s compiled program as ``guided``; writes ``OUT/predictions.jsonl``,
    ``metrics.json`` and ``config.json`` and returns the metrics. ``sources``: in-process models already
    resolved, by role (what ``lmcot.preflight.check_local`` returns), so the LMs and the token
    counter are built from them instead of resolving them again."""
    from lmcot.jsonl import atomic_write_text, write_json
    from lmcot.lms import build_lms, cache_in
    from lmcot.preflight import check_cache_dir, check_out_dir
    from lmcot.programs.lm_guided_cot import LMGuidedCoT
    from lmcot.run_lock import output_lock
    from lmcot.splits import load_split

    methods = check_methods(methods if methods is not None else config.eval.methods)
    out = Path(out_dir or config.eval.out)
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
        with output_lock(out, "evaluate_from_config"):  # a second run on this folder fails at once, before any call
            all_rows, metrics = evaluate_methods(config, methods, examples, small_lm, large_lm, guided=guided,
                                                 progress=progress, sources=sources)
            atomic_write_text(out / "predictions.jsonl",
                              "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in all_rows))
            write_json(out / "metrics.json", metrics)
            write_json(out / "config.json", {**config.to_public_dict(), "program": str(program_dir) if program_dir else None})
        return metrics

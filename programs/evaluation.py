"""The evaluation loop: run a program on examples and measure it (library code, no files written).

    rows, summary = evaluate_program(program, devset, concurrency=8, label="guided", lms=[small, large])
    rows, metrics = evaluate_methods(config, ["standard", "cot", "guided"], devset, small_lm, large_lm)

``lmcot evaluate`` (``commands/evaluate.py``) writes what ``evaluate_methods`` returns; the compiler
measures the small LM before and after training with ``evaluate_program``.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Sequence

import dspy

from lmcot.config import ConfigError, LMCoTConfig
from lmcot.errors import RunError
from lmcot.usage import UsageMeter

METHODS = ("standard", "cot", "guided")


def check_methods(methods: Sequence[str]) -> list[str]:
    methods = list(methods)
    for m in methods:
        if m not in METHODS:
            raise ConfigError(f"unknown method {m!r}; methods are {', '.join(METHODS)}")
    return methods


def build_program(method: str, small_lm: dspy.LM | None, large_lm: dspy.LM, config: LMCoTConfig):
    from lmcot.programs import CoTPrompting, StandardPrompting

    if method == "standard":
        return StandardPrompting(large_lm)
    if method == "cot":
        return CoTPrompting(large_lm)
    if method == "guided":
        return guided_program(small_lm, large_lm, config)
    raise ConfigError(f"unknown method {method!r}; methods are {', '.join(METHODS)}")


def guided_program(small_lm: dspy.LM | None, large_lm: dspy.LM, config: LMCoTConfig, *, num_samples: int | None = None,
                   sample_temperature: float | None = None, select: str | None = None,
                   rationale_form: str | None = None):
    """``LMGuidedCoT`` as ``config.eval`` says (k samples, temperature, how to pick among them) with the
    rationale form of ``config.kd.rationale_form``; the keyword arguments override them (a compiled
    program's own form comes from its ``program.json``). ``select="quality..."`` scores rationales with
    ``config.rationale_metrics`` (its judge and backends), its scorer built on first use."""
    from lmcot.programs import LMGuidedCoT

    select = config.eval.select if select is None else select
    return LMGuidedCoT(small_lm, large_lm,
                       num_samples=config.eval.num_samples if num_samples is None else num_samples,
                       sample_temperature=config.eval.sample_temperature if sample_temperature is None
                       else sample_temperature,
                       select=select, scorer=_LazyScorer(config) if select != "vote" else None,
                       rationale_form=config.kd.rationale_form if rationale_form is None else rationale_form)


class _LazyScorer:
    """A ``RationaleScorer`` from the config, built at its first ``score`` call: loading the reference
    LM and the judge waits until a rationale is actually selected (a cached rerun never does)."""

    def __init__(self, config: LMCoTConfig) -> None:
        self.config, self._scorer, self._lock = config, None, threading.Lock()

    def __deepcopy__(self, memo):  # ``program.deepcopy()``: a lock cannot be copied, and a copy builds its own
        return _LazyScorer(self.config)

    def score(self, *args, **kwargs):
        with self._lock:
            if self._scorer is None:
                from lmcot.metrics.rationale import scorer_from_config

                self._scorer = scorer_from_config(self.config)
        return self._scorer.score(*args, **kwargs)


def rationale_workers(program: dspy.Module, concurrency: int) -> int:
    """Threads for the rationale phase: enough that an in-process small LM always has a full batch
    queued behind the one it is generating (two batches' worth), else the run's concurrency."""
    from lmcot.hf_engine import hf_engine_of

    engine = hf_engine_of(program.small_lm) if getattr(program, "small_lm", None) is not None else None
    return max(concurrency, 2 * engine.batch_size) if engine is not None else concurrency


def predict_all(program: dspy.Module, examples: list[dspy.Example], *, concurrency: int, label: str,
                progress: bool = True) -> list[dict[str, Any]]:
    """Run ``program`` on every example (``concurrency`` threads, rich progress bar). A failed example
    is recorded with its error and scores 0, as ``dspy.Evaluate`` does, rather than stopping the run.

    A program with ``rationales_for`` / ``answer_from`` (LMGuidedCoT) runs in two phases: every
    rationale is requested at once, and each example's answer starts (``concurrency`` at a time) as
    soon as its rationales are written. Interleaving one small-LM and one large-LM call per thread
    would keep the small LM's batches small and the large-LM calls waiting behind them; phased, the
    small LM sees every request at once and the large LM works while it generates. The calls (and
    so the results and cache entries) are the same as ``forward``'s."""
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn

    from lmcot.metrics import answer_em, answer_f1
    from lmcot.plain_progress import progress_bar
    from lmcot.parallel import map_concurrently, submit_in_context

    phased = hasattr(program, "rationales_for") and hasattr(program, "answer_from")

    def run_one(item: tuple[dspy.Example, Any]) -> dict[str, Any]:
        ex, rationales = item
        row: dict[str, Any] = {"id": ex.id, "method": label, "question": ex.question, "gold": ex.answer}
        try:
            if isinstance(rationales, Exception):
                raise rationales
            pred = program.answer_from(ex.question, ex.context, rationales) if phased else program(**ex.inputs())
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
        row["em"], row["f1"] = answer_em(row["answer"], ex.answer), answer_f1(row["answer"], ex.answer)
        return row

    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    with progress_bar(*columns, label=label, disable=not progress, transient=False) as bar:
        if not phased:
            task = bar.add_task(label, total=len(examples))
            return map_concurrently(run_one, [(ex, None) for ex in examples], max(1, concurrency),
                                    on_result=lambda _: bar.advance(task))
        phase = bar.add_task(f"{label}: rationales", total=len(examples))
        task = bar.add_task(label, total=len(examples))
        answers = ThreadPoolExecutor(max_workers=max(1, concurrency))
        futures: list[Future | None] = [None] * len(examples)

        def rationales_ready(i: int, rationales: Any) -> None:
            bar.advance(phase)
            futures[i] = submit_in_context(answers, run_one, (examples[i], rationales))
            futures[i].add_done_callback(lambda _: bar.advance(task))

        try:
            program.rationales_for(examples, max_workers=rationale_workers(program, max(1, concurrency)),
                                   on_done=rationales_ready)
            return [f.result() for f in futures]
        finally:
            # On Ctrl-C, answers not yet started are dropped rather than run (and paid for).
            answers.shutdown(wait=True, cancel_futures=True)


def evaluate_program(program: dspy.Module, examples: list[dspy.Example], *, concurrency: int, label: str,
                     progress: bool = True, lms: Sequence[dspy.LM | None] = (),
                     what: str | None = None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Per-example rows and their summary ``{"em", "f1", "n", "errors", "seconds", "usage"}`` (usage of
    the ``lms`` during this run). Raises when every example failed (an unreachable LM, a bad key): the
    numbers would only measure the outage. ``what`` names the run in that error (default ``label``)."""
    from lmcot.metrics import aggregate

    meter = UsageMeter(list(lms))
    start = time.perf_counter()
    rows = predict_all(program, examples, concurrency=concurrency, label=label, progress=progress)
    failed = [r["error"] for r in rows if r["error"]]
    if rows and len(failed) == len(rows):
        raise RunError(f"{what or label}: every example failed; first error: {failed[0]}")
    return rows, {**aggregate(rows), "errors": len(failed), "seconds": round(time.perf_counter() - start, 2),
                  "usage": meter.report()}


def evaluate_methods(config: LMCoTConfig, methods: Sequence[str], examples: list[dspy.Example],
                     small_lm: dspy.LM | None, large_lm: dspy.LM, *, guided: dspy.Module | None = None,
                     progress: bool = True) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Each method on ``examples``: all rows, and ``{method: summary}``. ``guided`` replaces the
    LM-guided program built from ``small_lm`` (e.g. a compiled one)."""
    all_rows: list[dict[str, Any]] = []
    metrics: dict[str, Any] = {}
    for method in check_methods(methods):
        program = guided if (method == "guided" and guided is not None) else build_program(method, small_lm, large_lm, config)
        rows, metrics[method] = evaluate_program(program, examples, concurrency=config.eval.concurrency, label=method,
                                                 progress=progress, lms=[small_lm, large_lm])
        all_rows.extend(rows)
    return all_rows, metrics

"""The evaluation loop: run a program on examples and measure it (library code, no files written).

    rows, summary = evaluate_program(program, devset, concurrency=8, label="guided", lms=[small, large])
    rows, metrics = evaluate_methods(config, ["standard", "cot", "guided"], devset, small_lm, large_lm)

``lmcot evaluate`` (``lmcot/evaluate.py``) writes what ``evaluate_methods`` returns; the compiler
measures the small LM before and after training with ``evaluate_program``.
"""

from __future__ import annotations

import time
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
    from lmcot.programs import CoTPrompting, LMGuidedCoT, StandardPrompting

    if method == "standard":
        return StandardPrompting(large_lm)
    if method == "cot":
        return CoTPrompting(large_lm)
    if method == "guided":
        return LMGuidedCoT(small_lm, large_lm, num_samples=config.eval.num_samples,
                           sample_temperature=config.eval.sample_temperature)
    raise ConfigError(f"unknown method {method!r}; methods are {', '.join(METHODS)}")


def predict_all(program: dspy.Module, examples: list[dspy.Example], *, concurrency: int, label: str,
                progress: bool = True) -> list[dict[str, Any]]:
    """Run ``program`` on every example (``concurrency`` threads, rich progress bar). A failed example
    is recorded with its error and scores 0, as ``dspy.Evaluate`` does, rather than stopping the run."""
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn

    from lmcot.metrics import answer_em, answer_f1
    from lmcot.plain_progress import progress_bar
    from lmcot.programs.parallel import map_concurrently

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
            if getattr(exc, "rationales", None):  # AnswerCallError: the rationale was written
                row.update(rationale=exc.rationales[0], rationales=exc.rationales)
        row["em"], row["f1"] = answer_em(row["answer"], ex.answer), answer_f1(row["answer"], ex.answer)
        return row

    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    with progress_bar(*columns, label=label, disable=not progress, transient=False) as bar:
        task = bar.add_task(label, total=len(examples))
        return map_concurrently(run_one, examples, max(1, concurrency), on_result=lambda _: bar.advance(task))


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

"""The compiler's dev report: how the small LM did before and after each stage (EM/F1 and the user metric,
the share of rationales stating the evidence where the task has gold evidence, the share stating an
answer, how many were cut at ``small_lm.max_tokens``) and the table ``lmcot compile`` prints from it."""

from __future__ import annotations

from typing import Any

from lmcot.config import ASPECTS


def cut_at_max_tokens(rows: list[dict[str, Any]], engine, max_tokens: int) -> int:
    """Rationales that reached small_lm.max_tokens (stopped by the budget, not by EOS). Counted from
    the text, so rationales served from DSPy's cache count too; re-tokenizing decoded text can differ
    by a token (a stripped space), hence the slack of one."""
    if engine is None:
        return 0
    tok = engine.tokenizer
    with engine.model_lock:  # the engine's fast tokenizer is not safe to share across threads
        return sum(1 for r in rows if len(tok(r.get("rationale") or "", add_special_tokens=False).input_ids)
                   >= max_tokens - 1)


def answer_leak_share(rows: list[dict[str, Any]], same=None) -> dict[str, Any]:
    """Share of dev rationales that state an answer ("So the answer is X", whatever the task), and of
    those the share whose stated answer is the gold under ``same`` (the task's match; default span EM;
    ``lmcot.metrics.answer_leak``): a reader that follows a rationale answers what it states."""
    from lmcot.metrics.answer_leak import answer_leak

    leak = answer_leak(rows) if same is None else answer_leak(rows, same)
    return {"answer_stated": leak["stated_share"] or 0.0, "stated_right": leak["stated_accuracy"]}


def report_table(report: dict[str, Any]):
    """A rich table: one column per point of the compile (untrained, after KD, compiled), one row per
    measure (dev EM, F1, n and, when RL ran, each rationale-quality aspect)."""
    from rich.table import Table

    points = [(k, label) for k, label in (("untrained", "untrained"), ("before_rl", "after KD"),
                                          ("compiled", "compiled")) if k in report]
    table = Table(title="dev set: the small LM before and after compiling")
    table.add_column("")
    for _, label in points:
        table.add_column(label, justify="right")
    table.add_row("answer EM", *(f"{report[k]['em']:.3f}" for k, _ in points))
    table.add_row("answer F1", *(f"{report[k]['f1']:.3f}" for k, _ in points))
    if any("metric" in report[k] for k, _ in points):
        name = next(report[k].get("metric_name") for k, _ in points if "metric" in report[k])
        table.add_row(f"metric {name}", *(f"{report[k]['metric']:.3f}" if "metric" in report[k] else "-"
                                         for k, _ in points))
    if any("off_label" in report[k] for k, _ in points):
        table.add_row("answers outside data.labels", *(str(report[k].get("off_label", 0)) for k, _ in points))
    table.add_row("n", *(str(report[k]["n"]) for k, _ in points))
    if any("evidence_stated" in report[k] for k, _ in points):  # only a task with gold evidence has it
        table.add_row("rationale states evidence", *(f"{report[k].get('evidence_stated', 0):.3f}" for k, _ in points))
    if any("rationales_cut" in report[k] for k, _ in points):
        table.add_row("rationales cut at max_tokens", *(str(report[k].get("rationales_cut", 0)) for k, _ in points))
    if any("answer_stated" in report[k] for k, _ in points):
        table.add_row("rationale states an answer", *(f"{report[k].get('answer_stated', 0):.3f}" for k, _ in points))
        table.add_row("... and it is the gold", *("-" if report[k].get("stated_right") is None
                                                  else f"{report[k]['stated_right']:.3f}" for k, _ in points))
    if any(report[k].get("errors") for k, _ in points):
        table.add_row("failed examples", *(str(report[k].get("errors", 0)) for k, _ in points))
    if any("aspects" in report[k] for k, _ in points):
        def shown(k: str, aspect: str) -> str:
            value = report[k].get("aspects", {}).get(aspect, "-")
            return "n/a" if value is None else value if isinstance(value, str) else f"{value:.3f}"

        for aspect in ASPECTS:
            table.add_row(aspect, *(shown(k, aspect) for k, _ in points))
    return table

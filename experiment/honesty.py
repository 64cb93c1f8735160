"""What the report must say about its own numbers (issue 15), computed from ``results.json`` alone:

* **answer leakage** of every guided row (``lmcot.metrics.answer_leak``): how many rationales state an
  answer, how often that answer is right, how often the reader answers it, and EM split by stated-right /
  stated-wrong / no stated answer (after Hase et al., 2020, leakage-adjusted simulatability);
* **rows that cannot differ**: how many dev rationales and answers each RL student changed against the
  KD student it started from, "no measurable change" when none;
* **rows set by a script**: ``experiment.scripted_methods`` (a stand-in's fixed shares), marked
  "[scripted]" in every table and plot label.
"""

from __future__ import annotations

from typing import Any

from lmcot.metrics.answer_leak import answer_leak, changed_predictions

SCRIPTED_MARK = "[scripted]"
NO_CHANGE_MARK = "[no measurable change from KD]"
# RL students and the KD student they start from (experiment/students.py).
RL_STUDENTS = ("kd_rl", "rl_quality", "rl_answer")


def scripted_methods(results: dict[str, Any]) -> set[str]:
    return set((results.get("config", {}).get("experiment", {}) or {}).get("scripted_methods") or [])


def rl_changes(results: dict[str, Any]) -> dict[str, dict[str, int]]:
    """Per RL student with a greedy row: its dev rationales / answers / EM scores that differ from the
    KD student's on the same questions (``changed_predictions``)."""
    methods = results["methods"]
    if "guided_kd" not in methods:
        return {}
    start = methods["guided_kd"]["rows"]
    answer_type = ((results.get("config") or {}).get("data") or {}).get("answer_type") or "span"
    return {st: changed_predictions(start, methods[f"guided_{st}"]["rows"], answer_type)
            for st in RL_STUDENTS if f"guided_{st}" in methods}


def unchanged(change: dict[str, int]) -> bool:
    """No rationale, answer or score of the RL student differs from its KD start's."""
    return not (change["rationales_changed"] or change["answers_changed"] or change["scores_changed"])


def change_note(change: dict[str, int]) -> str:
    """One phrase for a student's change against its KD start."""
    n = change["questions"]
    if unchanged(change):
        return f"no measurable change: 0 of {n} rationales differ from KD"
    return (f"{change['rationales_changed']} of {n} rationales, {change['answers_changed']} answers and "
            f"{change['scores_changed']} EM scores differ from KD")


def mark_labels(results: dict[str, Any], summary: dict[str, dict[str, Any]]) -> None:
    """Append the marks to each method's label in ``summary`` (``tables.method_summary``) in place, so
    every table and plot that prints a label carries them; ``scripted`` and ``unchanged`` flags too."""
    scripted = scripted_methods(results)
    same = {f"guided_{st}" for st, c in rl_changes(results).items() if unchanged(c)}
    for name, m in summary.items():
        m["scripted"] = name in scripted
        m["unchanged"] = name in same
        if m["scripted"] and SCRIPTED_MARK not in m["label"]:
            m["label"] = f"{m['label']} {SCRIPTED_MARK}"
        if m["unchanged"] and NO_CHANGE_MARK not in m["label"]:
            m["label"] = f"{m['label']} {NO_CHANGE_MARK}"


def leak_summary(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``answer_leak`` of every guided row (a row with rationales), in results order, answers compared
    as the task compares them (its answer type)."""
    from lmcot.metrics.task_metric import TaskMetric

    task = results.get("task") or {}
    labels = task.get("labels")
    same = TaskMetric(task.get("answer_type", "span"), tuple(labels) if labels else None).same_answer
    return {name: answer_leak(m["rows"], same) for name, m in results["methods"].items()
            if m.get("kind") == "guided" and any("rationale" in r or "rationales" in r for r in m["rows"])}


def _share(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}"


def leak_rows(results: dict[str, Any], labels: dict[str, str]) -> list[list[str]]:
    rows = []
    for name, leak in leak_summary(results).items():
        groups = leak["em_by_stated"]
        rows.append([labels.get(name, name), str(leak["rationales"]), _share(leak["stated_share"]),
                     _share(leak["stated_accuracy"]), _share(leak["reader_follows"]),
                     *(f"{_share(groups[g]['em'])} ({groups[g]['n']})" for g in ("stated_right", "stated_wrong", "none"))])
    return rows


LEAK_COLUMNS = ["method", "rationales", "state an answer", "stated answer right", "reader answers it",
                "EM: stated right (n)", "EM: stated wrong (n)", "EM: none stated (n)"]
LEAK_NOTE = ("Per rationale (k per question for self-consistency rows). A rationale that states an answer "
             "('So the answer is X', lmcot.metrics.stated_answer) hands the reader that answer: EM on those "
             "measures what the rationale leaks, EM on rationales that state none what its reasoning and evidence "
             "explain (the split of leakage-adjusted simulatability, Hase et al., 2020, Findings of EMNLP). "
             "'reader answers it': share of stating rationales whose answer the reader gave.")

"""Every number of the report, computed from ``results.json`` alone (no LM, no model).

``build_tables(results)`` returns a list of ``Table``s (title, column names, formatted rows, a note);
``report.py`` renders them as Markdown and HTML and ``plots.py`` draws from ``summary(results)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lmcot.experiment.quality import ASPECTS, selections
from lmcot.experiment.stats import bootstrap_ci, mcnemar_exact, paired_bootstrap

STUDENT_ORDER = ("untrained", "kd", "kd_rl", "rl_quality", "rl_answer")
# (a, b): "is a better than b?" Only pairs whose two rows ran are shown.
COMPARISONS = (("guided_kd_rl", "cot"), ("guided_kd", "cot"), ("guided_kd_rl_sc", "cot_sc"),
               ("guided_kd_rl", "guided_kd"), ("guided_kd_rl_quality", "guided_kd_rl_sc"),
               # does training the student help the reader at all, in each rationale form (issue 15)?
               ("guided_kd", "guided_untrained"), ("guided_kd_evidence", "guided_untrained_evidence"),
               ("guided_kd_full", "guided_untrained_full"), ("guided_kd_evidence", "guided_kd"),
               ("guided_kd_full", "guided_kd"))


@dataclass
class Table:
    key: str
    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    note: str = ""


def _f(x: float | None, digits: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else 0.0


def method_summary(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per method: n, em, f1, their bootstrap intervals, correct answers and cost figures."""
    cfg = results.get("rendering", {})
    samples, seed = cfg.get("bootstrap_samples", 1000), cfg.get("seed", 0)
    out = {}
    for name, m in results["methods"].items():
        em = [float(r["em"]) for r in m["rows"]]
        f1 = [float(r["f1"]) for r in m["rows"]]
        u = m["usage"]
        correct = sum(em)
        tokens = u["prompt_tokens"] + u["completion_tokens"]
        out[name] = {
            "label": m["label"], "group": m["group"], "n": len(em), "em": _mean(em), "f1": _mean(f1),
            "em_ci": bootstrap_ci(em, samples, seed), "f1_ci": bootstrap_ci(f1, samples, seed),
            "correct": correct, "errors": sum(1 for r in m["rows"] if r.get("error")),
            "calls": u["calls"], "cached_calls": u["cached_calls"], "prompt_tokens": u["prompt_tokens"],
            "completion_tokens": u["completion_tokens"], "cost_usd": u["cost_usd"],
            "small_lm_seconds": u["small_lm_seconds"],
            "tokens_per_correct": tokens / correct if correct else None,
            "usd_per_correct": (u["cost_usd"] / correct) if (u["cost_usd"] is not None and correct) else None,
        }
    from lmcot.experiment.honesty import mark_labels

    mark_labels(results, out)  # [scripted] and [no measurable change from KD], in every table and plot
    return out


def aspect_summary(results: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Per student: the mean of each aspect over its greedy dev rationales."""
    out = {}
    for student in STUDENT_ORDER:
        if student in results.get("aspects", {}):
            scores = results["aspects"][student]["scores"]
            out[student] = {a: _mean([s[a] for s in scores]) for a in ASPECTS}
    return out


def comparison_summary(results: dict[str, Any]) -> list[dict[str, Any]]:
    cfg = results.get("rendering", {})
    samples, seed = cfg.get("bootstrap_samples", 1000), cfg.get("seed", 0)
    out = []
    for a, b in COMPARISONS:
        if a not in results["methods"] or b not in results["methods"]:
            continue
        ra = {r["id"]: r for r in results["methods"][a]["rows"]}
        rb = {r["id"]: r for r in results["methods"][b]["rows"]}
        ids = [i for i in ra if i in rb]
        em_a, em_b = [float(ra[i]["em"]) for i in ids], [float(rb[i]["em"]) for i in ids]
        f1_a, f1_b = [float(ra[i]["f1"]) for i in ids], [float(rb[i]["f1"]) for i in ids]
        out.append({"a": a, "b": b, "n": len(ids), "em": paired_bootstrap(em_a, em_b, samples, seed),
                    "f1": paired_bootstrap(f1_a, f1_b, samples, seed), "mcnemar": mcnemar_exact(em_a, em_b)})
    return out


def summary(results: dict[str, Any]) -> dict[str, Any]:
    return {"methods": method_summary(results), "aspects": aspect_summary(results),
            "comparisons": comparison_summary(results),
            "quality": selections(results) if results.get("quality") else None}


STUDENT_LABELS = {"untrained": "untrained", "kd": "KD", "kd_rl": "KD+RL", "rl_quality": "RL: quality only",
                  "rl_answer": "RL: answer F1 only"}


def build_tables(results: dict[str, Any], s: dict[str, Any] | None = None) -> list[Table]:
    s = s or summary(results)
    ms = s["methods"]
    tables: list[Table] = []
    dataset = results["dev"]["dataset"]
    main = Table("methods", f"Methods on {dataset} dev (n={results['dev']['n']}), large LM {results['large_lm']}",
                 ["method", "n", "EM", "EM 95% CI", "F1", "F1 95% CI", "large-LM calls", "prompt tok",
                  "completion tok", "cost ($)", "small-LM s", "tok / correct", "$ / correct"],
                 note="EM/F1 are means over dev questions; 95% CIs: percentile bootstrap over questions. "
                      "Cost is what each method needs on its own (calls answered from the cache counted with "
                      "the usage recorded when they were paid); $ from litellm's price table, n/a where it has no "
                      "price. small-LM s: generation time in this run (near 0 when an earlier row already sampled "
                      "the same rationales). [scripted]: a row whose numbers the stand-in's script sets "
                      "(experiment.scripted_methods), not a measurement. [no measurable change from KD]: an RL "
                      "student whose greedy dev rationales are all the KD student's.")
    for name, m in ms.items():
        if m["group"] == "ablation":
            continue
        main.rows.append([m["label"], str(m["n"]), _f(m["em"]), f"[{_f(m['em_ci'][0])}, {_f(m['em_ci'][1])}]",
                          _f(m["f1"]), f"[{_f(m['f1_ci'][0])}, {_f(m['f1_ci'][1])}]", str(m["calls"]),
                          str(m["prompt_tokens"]), str(m["completion_tokens"]), _f(m["cost_usd"], 4),
                          _f(m["small_lm_seconds"], 1), _f(m["tokens_per_correct"], 0),
                          _f(m["usd_per_correct"], 5)])
    tables.append(main)

    from lmcot.experiment.honesty import LEAK_COLUMNS, LEAK_NOTE, leak_rows

    leak = leak_rows(results, {name: m["label"] for name, m in ms.items()})
    if leak:
        tables.append(Table("answer_leak", "Answer leakage: what the rationales state, and what the reader does with it",
                            LEAK_COLUMNS, leak, note=LEAK_NOTE))

    if s["aspects"]:
        students = list(s["aspects"])
        t = Table("aspects", "Rationale quality (0-1) of each student's greedy dev rationales: before / after RL",
                  ["aspect", *[STUDENT_LABELS[x] for x in students]],
                  note="Aspect backends from rationale_metrics (cheap formulas unless set to judge).")
        for a in ASPECTS:
            t.rows.append([a, *[_f(s["aspects"][x][a]) for x in students]])
        t.rows.append(["mean", *[_f(_mean(list(s["aspects"][x].values()))) for x in students]])
        tables.append(t)

    ablation = [(v, f"guided_{st}") for v, st in (("both", "kd_rl"), ("quality", "rl_quality"),
                                                   ("answer", "rl_answer"))
                if f"guided_{st}" in ms and results["config"]["experiment"]["rl_ablation"].count(v)]
    if ablation:
        from lmcot.experiment.honesty import change_note, rl_changes

        changes = rl_changes(results)
        t = Table("ablation", "RL ablation: reward sets from the same KD checkpoint",
                  ["rewards", "n", "EM", "F1", "mean aspect quality", "change vs the KD start"],
                  note="Change: greedy dev rationales (and answers, EM scores) that differ from the KD student's on "
                       "the same questions. With none changed, the rows cannot differ from KD, whatever the reward.")
        for v, name in ablation:
            st = name.removeprefix("guided_")
            quality = _mean(list(s["aspects"][st].values())) if st in s["aspects"] else None
            t.rows.append([{"both": "quality + answer F1", "quality": "quality only", "answer": "answer F1 only"}[v],
                           str(ms[name]["n"]), _f(ms[name]["em"]), _f(ms[name]["f1"]), _f(quality),
                           change_note(changes[st]) if st in changes else "n/a"])
        tables.append(t)

    q = s["quality"]
    if q:
        k = results["quality"]["k"]
        t = Table("selection", f"Which of k={k} rationales should the large LM read? "
                               f"({STUDENT_LABELS[results['quality']['student']]} student)",
                  ["selection", "n", "EM", "F1"],
                  note="Answers come from the self-consistency row (one answer per sampled rationale); "
                       "oracle = any of the k answers right (the ceiling of any selection).")
        for name in q["em"]:
            t.rows.append([name, str(len(q["em"][name])), _f(_mean(q["em"][name])), _f(_mean(q["f1"][name]))])
        tables.append(t)
        t = Table("thresholds", "Accuracy of the questions whose best rationale clears a quality threshold",
                  ["threshold (mean aspect)", "questions", "EM of best-rationale answer"])
        for row in q["thresholds"]:
            t.rows.append([_f(row["threshold"], 2), str(row["n"]), _f(row["em"])])
        tables.append(t)

    if s["comparisons"]:
        t = Table("significance", "Significance on the same questions",
                  ["A vs B", "n", "EM A-B", "95% CI", "p (paired bootstrap)", "only A right", "only B right",
                   "p (exact McNemar)", "F1 A-B", "p (F1 bootstrap)"],
                  note="p < 0.05 suggests the difference is not noise; with few questions nearly nothing is.")
        for c in s["comparisons"]:
            t.rows.append([f"{ms[c['a']]['label']} vs {ms[c['b']]['label']}", str(c["n"]), _f(c["em"]["diff"]),
                           f"[{_f(c['em']['ci_low'])}, {_f(c['em']['ci_high'])}]", _f(c["em"]["p"]),
                           str(c["mcnemar"]["only_a"]), str(c["mcnemar"]["only_b"]), _f(c["mcnemar"]["p"]),
                           _f(c["f1"]["diff"]), _f(c["f1"]["p"])])
        tables.append(t)
    return tables

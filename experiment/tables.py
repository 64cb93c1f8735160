"""Every number of the report, computed from ``results.json`` alone (no LM, no model).

``build_tables(results)`` returns a list of ``Table``s (title, column names, formatted rows, a note);
``report.py`` renders them as Markdown and HTML and ``plots.py`` draws from ``summary(results)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lmcot.experiment.quality import ASPECTS, selections
from lmcot.experiment.stats import bootstrap_ci, mcnemar_exact, paired_bootstrap

STUDENT_ORDER = ("untrained", "kd", "kd_dataset", "kd_rl", "rl_quality", "rl_answer")
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


def p_text(p: float) -> str:
    """A p-value as papers write it: three decimals, and "< 0.001" below that (not "0.000")."""
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def _disagreements(comparisons: list[dict[str, Any]], ms: dict[str, Any], alpha: float = 0.05) -> list[str]:
    """A sentence for each comparison where the paired bootstrap and the exact McNemar test fall on
    different sides of ``alpha``: a reader must not take the smaller p on its own."""
    def p_is(p: float) -> str:
        return p_text(p) if p < 0.001 else f"= {p_text(p)}"

    out = []
    for c in comparisons:
        boot, exact = c["em"]["p"], c["mcnemar"]["p"]
        if (boot < alpha) == (exact < alpha):
            continue
        discordant = c["mcnemar"]["only_a"] + c["mcnemar"]["only_b"]
        out.append(f"{ms[c['a']]['label']} vs {ms[c['b']]['label']}: the paired bootstrap (p {p_is(boot)}) and the "
                   f"exact McNemar test (p {p_is(exact)}) disagree at n={c['n']} ({discordant} questions on which "
                   "only one of the two is right). With so few questions the bootstrap understates the uncertainty "
                   "(it resamples only the questions it has, so a handful of one-sided differences rarely crosses "
                   "zero); the exact test is the one to trust here.")
    return out


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else 0.0


def _mean_known(xs: list[float | None]) -> float | None:
    """Mean of the scores that are not n/a (None); None when all are."""
    known = [x for x in xs if x is not None]
    return sum(known) / len(known) if known else None


def answer_columns(results: dict[str, Any]) -> list[tuple[str, str]]:
    """(row key, column label) of the answer scores, named by the task: EM and F1 for spans, one accuracy
    for numbers and labels (their F1 equals EM), and the user metric by its name."""
    task = results.get("task") or {}
    kind = task.get("answer_type", "span")
    cols = [("em", "EM"), ("f1", "F1")] if kind == "span" else [("em", f"accuracy ({kind} match)")]
    if task.get("metric_name"):
        cols.append(("metric", f"metric: {task['metric_name']}"))
    return cols


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
            "metric": _mean([float(r.get("metric") or 0.0) for r in m["rows"]]) if any("metric" in r for r in m["rows"])
            else None,
            "correct": correct, "errors": sum(1 for r in m["rows"] if r.get("error")),
            "calls": u["calls"], "cached_calls": u["cached_calls"], "prompt_tokens": u["prompt_tokens"],
            "completion_tokens": u["completion_tokens"], "cost_usd": u["cost_usd"],
            # Generation of the rationales the method reads, plus scoring them when it picks one by quality.
            "small_lm_seconds": u["small_lm_seconds"] + u.get("scoring_seconds", 0.0),
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
            out[student] = {a: _mean_known([s[a] for s in scores]) for a in ASPECTS}
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
            "quality": selections(results) if results.get("quality") else None,
            "training": results.get("training") or {}}


STUDENT_LABELS = {"untrained": "untrained", "kd": "KD", "kd_rl": "KD+RL", "rl_quality": "RL: quality only",
                  "rl_answer": "RL: answer F1 only", "kd_dataset": "KD: dataset rationales"}


def build_tables(results: dict[str, Any], s: dict[str, Any] | None = None) -> list[Table]:
    s = s or summary(results)
    ms = s["methods"]
    tables: list[Table] = []
    dataset = results["dev"]["dataset"]
    answers = answer_columns(results)
    score_columns = [c for key, label in answers for c in ((label, f"{label} 95% CI") if key != "metric" else (label,))]
    describe = (results.get("task") or {}).get("describe")
    main = Table("methods", f"Methods on {dataset} dev (n={results['dev']['n']}), large LM {results['large_lm']}"
                 + (f"; answers scored as {describe}" if describe else ""),
                 ["method", "n", *score_columns, "large-LM calls", "prompt tok",
                  "completion tok", "cost ($)", "small-LM s", "tok / correct", "$ / correct"],
                 note="EM/F1 are means over dev questions; 95% CIs: percentile bootstrap over questions. "
                      "Cost is what each method needs on its own (calls answered from the cache counted with "
                      "the usage recorded when they were paid); $ from litellm's price table, n/a where it has no "
                      "price. small-LM s: generate time of the rationales the method reads (those another row "
                      "already sampled counted with the time recorded when they were generated), plus, for the "
                      "top-quality row, the time to score them. [scripted]: a row whose numbers the stand-in's "
                      "script sets (experiment.scripted_methods), not a measurement. [no measurable change from "
                      "KD]: an RL student whose greedy dev rationales, answers and scores are all the KD student's.")
    for name, m in ms.items():
        if m["group"] == "ablation":
            continue
        scores = [c for key, _ in answers for c in ((_f(m[key]), f"[{_f(m[key + '_ci'][0])}, {_f(m[key + '_ci'][1])}]")
                                                     if key != "metric" else (_f(m["metric"]),))]
        main.rows.append([m["label"], str(m["n"]), *scores, str(m["calls"]),
                          str(m["prompt_tokens"]), str(m["completion_tokens"]), _f(m["cost_usd"], 4),
                          _f(m["small_lm_seconds"], 1), _f(m["tokens_per_correct"], 0),
                          _f(m["usd_per_correct"], 5)])
    tables.append(main)
    tables += training_tables(results, ms)

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
        t.rows.append(["mean", *[_f(_mean_known(list(s["aspects"][x].values()))) for x in students]])
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
            quality = _mean_known(list(s["aspects"][st].values())) if st in s["aspects"] else None
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
                  note=" ".join(["p < 0.05 suggests the difference is not noise; with few questions nearly nothing is.",
                                 *_disagreements(s["comparisons"], ms)]))
        for c in s["comparisons"]:
            t.rows.append([f"{ms[c['a']]['label']} vs {ms[c['b']]['label']}", str(c["n"]), _f(c["em"]["diff"]),
                           f"[{_f(c['em']['ci_low'])}, {_f(c['em']['ci_high'])}]", p_text(c["em"]["p"]),
                           str(c["mcnemar"]["only_a"]), str(c["mcnemar"]["only_b"]), p_text(c["mcnemar"]["p"]),
                           _f(c["f1"]["diff"]), p_text(c["f1"]["p"])])
        tables.append(t)
    return tables


# ------------------------------------------------------------------ the one-off cost of training
def training_cost(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per trained student, what training it cost once: ``usd`` (teacher + RL reward calls at list
    price; None when a model has no price), ``tokens`` (those calls' large-LM tokens) and ``seconds``
    (KD + RL wall time). An RL student's cost includes the KD stage it started from."""
    out = {}
    for student, record in (results.get("training") or {}).items():
        kd, rl = record.get("kd") or {}, record.get("rl") or {}
        calls = [c for c in ((kd.get("teacher") or {}) if kd else None, (rl.get("reward_calls") or {}) if rl else None)
                 if c is not None]
        usd = [c.get("cost_usd") for c in calls]
        out[student] = {
            "usd": None if any(x is None for x in usd) else float(sum(usd)),
            "tokens": sum(int(c.get("prompt_tokens") or 0) + int(c.get("completion_tokens") or 0) for c in calls),
            "seconds": sum(float(x.get("train_seconds") or 0.0) for x in (kd, rl) if x),
        }
    return out


def _steps(n: Any) -> str:
    return "1 step" if n == 1 else f"{n} steps"


def _int(x: Any) -> str:
    return "n/a" if x is None else str(int(x))


def training_tables(results: dict[str, Any], ms: dict[str, dict[str, Any]]) -> list[Table]:
    """The one-off cost of training (teacher calls, KD and RL time, tokens trained, reward calls) and
    the cost per correct answer with that cost spread over ``experiment.amortize_over`` questions."""
    records = results.get("training") or {}
    if not records:
        return []
    stages = Table("training", "One-off cost of training the students",
                   ["stage", "large-LM calls", "prompt tok", "completion tok", "cost ($)", "wall s", "tokens trained"],
                   note="Paid once per student, not per question. Teacher: the large LM (or kd.teacher) writing the "
                        "rationales KD learns from; RL: its reward calls (the large LM's answers, the judge's "
                        "verdicts). Calls answered from the cache count what they used when paid. wall s: the "
                        "stage's time as it ran (a resumed stage: its last run). tokens trained: tokens the trainer "
                        "processed (TRL's num_tokens; n/a where a trainer does not log it).")
    kd = next((r["kd"] for r in records.values() if r.get("kd")), None)
    if kd:
        t = kd.get("teacher") or {}
        stages.rows.append([f"teacher rationales for KD ({_int(t.get('kept'))} kept)", _int(t.get("calls")),
                            _int(t.get("prompt_tokens")), _int(t.get("completion_tokens")), _f(t.get("cost_usd"), 4),
                            _f(t.get("seconds"), 1), "-"])
        stages.rows.append([f"KD: distillation ({_steps(kd.get('steps'))})", "-", "-", "-", "-",
                            _f(kd.get("train_seconds"), 1), _int(kd.get("tokens_trained"))])
    for student in STUDENT_ORDER:
        rl = (records.get(student) or {}).get("rl")
        if not rl:
            continue
        c = rl.get("reward_calls") or {}
        stages.rows.append([f"RL: {rl.get('rewards') or STUDENT_LABELS[student]} ({_steps(rl.get('steps'))})",
                            _int(c.get("calls")), _int(c.get("prompt_tokens")), _int(c.get("completion_tokens")),
                            _f(c.get("cost_usd"), 4), _f(rl.get("train_seconds"), 1), _int(rl.get("tokens_trained"))])

    over = int((results.get("config") or {}).get("experiment", {}).get("amortize_over") or 10_000)
    cost = training_cost(results)
    per = Table("amortised", f"Cost per correct answer including training, amortised over {over:,} questions "
                             "(experiment.amortize_over)",
                ["method", "EM", "training ($)", "training tok", "training s", "$ / correct",
                 "$ / correct incl. training", "tok / correct incl. training", "small-LM s / correct incl. training"],
                note=f"Each trained row carries its student's one-off cost spread over {over:,} questions: "
                     f"(row total + training x n / {over:,}) / correct answers on the n dev questions. Tokens are "
                     "the large LM's (the row's calls plus the teacher's and RL's); seconds are the small LM's "
                     "generate time plus KD and RL wall time. Rows without a trained student carry no training.")
    for name, m in ms.items():
        student = results["methods"][name].get("student")
        train = cost.get(student) or {"usd": 0.0, "tokens": 0, "seconds": 0.0}
        share = m["n"] / over
        correct = m["correct"]
        tokens = m["prompt_tokens"] + m["completion_tokens"]

        def per_correct(total: float | None, once: float | None) -> float | None:
            return None if total is None or once is None or not correct else (total + once * share) / correct

        trained = student in cost
        per.rows.append([m["label"], _f(m["em"]), _f(train["usd"], 4) if trained else "-",
                         str(train["tokens"]) if trained else "-", _f(train["seconds"], 1) if trained else "-",
                         _f(m["usd_per_correct"], 5), _f(per_correct(m["cost_usd"], train["usd"]), 5),
                         _f(per_correct(tokens, train["tokens"]), 0),
                         _f(per_correct(m["small_lm_seconds"], train["seconds"]), 2)])
    return [stages, per]

"""The rationale-quality analysis (the paper's open question: does a better rationale give a better
answer?), computed from ``results.json`` alone.

For every dev question the quality student wrote k sampled rationales and the large LM answered from
each (the self-consistency row). With each rationale's eight aspect scores, compare the answer from
the rationale picked by: the mean of the aspects, each aspect alone, a random pick (seeded per
question), and the majority vote over all k; plus the oracle (any of the k answers right) as the
ceiling. Then, for a range of thresholds: how many questions have a best rationale whose mean
clears it, and how accurate the answer from that rationale is on them.
"""

from __future__ import annotations

import random
from typing import Any

from lmcot.aspects import ASPECTS


def _mean(s: dict[str, float | None]) -> float:
    known = [s[a] for a in ASPECTS if s.get(a) is not None]  # n/a aspects (no passage) are left out
    return sum(known) / len(known) if known else 0.0


def _argmax(values: list[float]) -> int:
    return values.index(max(values))  # ties: the first sampled, as LMGuidedCoT(select="quality")


def selections(results: dict[str, Any]) -> dict[str, Any]:
    """``{"rows": {selector: [em per question]}, "f1": {...}, "thresholds": [...]}``. Answers are scored
    under the task's answer type (``results["task"]``); an aspect that is n/a for the task (no passage)
    selects nothing and has no row."""
    from lmcot.metrics.task_metric import TaskMetric

    task_info = results.get("task") or {}
    task = TaskMetric(task_info.get("answer_type", "span"), tuple(task_info.get("labels") or ()) or None)

    def answer_em(pred: str, gold: str) -> float:
        return task.em_f1(pred, gold)[0]

    def answer_f1(pred: str, gold: str) -> float:
        return task.em_f1(pred, gold)[1]

    q = results["quality"]
    method = results["methods"][q["method"]]
    scores = {r["id"]: r["scores"] for r in q["rows"]}
    seed = q.get("seed", 0)
    em: dict[str, list[float]] = {}
    f1: dict[str, list[float]] = {}
    best_mean: list[tuple[float, float]] = []  # (mean score of the best rationale, em of its answer)
    rated = [a for a in ASPECTS if any(x.get(a) is not None for r in q["rows"] for x in r["scores"])]

    def add(name: str, pred: str, gold: str) -> None:
        em.setdefault(name, []).append(answer_em(pred, gold))
        f1.setdefault(name, []).append(answer_f1(pred, gold))

    for row in method["rows"]:
        answers, gold, s = row.get("answers") or [], row["gold"], scores.get(row["id"]) or []
        if not answers or len(s) != len(answers):
            for name in ("quality (mean)", *[f"quality ({a})" for a in rated], "random", "majority vote", "oracle"):
                add(name, "", gold)
            best_mean.append((0.0, 0.0))
            continue
        means = [_mean(x) for x in s]
        best = _argmax(means)
        add("quality (mean)", answers[best], gold)
        for a in rated:
            add(f"quality ({a})", answers[_argmax([x[a] if x.get(a) is not None else 0.0 for x in s])], gold)
        add("random", answers[random.Random(f"{seed}:{row['id']}").randrange(len(answers))], gold)
        add("majority vote", row["answer"], gold)  # the self-consistency row's own vote
        right = [i for i, a in enumerate(answers) if answer_em(a, gold)]
        add("oracle", answers[right[0] if right else 0], gold)
        best_mean.append((means[best], answer_em(answers[best], gold)))
    thresholds = []
    for t in q["thresholds"]:
        kept = [e for m, e in best_mean if m >= t]
        thresholds.append({"threshold": t, "n": len(kept), "em": sum(kept) / len(kept) if kept else None})
    return {"em": em, "f1": f1, "thresholds": thresholds}

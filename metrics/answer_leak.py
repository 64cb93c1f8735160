"""Answer leakage of rationales: what a rationale *states* as the answer, apart from what it explains.

    summary = answer_leak(rows)      # rows as predictions.jsonl / results.json hold them
    summary["stated_share"], summary["stated_accuracy"], summary["reader_follows"], summary["em_by_stated"]

A rationale that ends "So the answer is X" hands the reader an answer: a reader that follows it is right
exactly when X is, whatever the evidence before it. Accuracy with such rationales measures the small
LM's answers as much as its reasoning. Hase et al. (2020, "Leakage-Adjusted Simulatability: Can Models
Generate Non-Trivial Explanations of Their Behavior in Natural Language?", Findings of EMNLP) separate
the two by splitting examples on whether the explanation leaks the label; here the split is by what
the rationale states (``lmcot.metrics.stated_answer``):

* ``stated_share``: rationales that state an answer;
* ``stated_accuracy``: of those, the share whose stated answer is the gold (official EM);
* ``reader_follows``: of those, the share where the reader's answer equals the stated one (EM after
  normalisation): how far the reader takes a rationale's word for the answer;
* ``em_by_stated``: the reader's EM on rationales whose stated answer is right, is wrong, and on those
  that state none (the group whose accuracy the rationale's evidence alone explains).

Every (rationale, the reader's answer to it) pair counts once: a greedy row is one pair, a
self-consistency row k pairs (its ``rationales`` and ``answers``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from lmcot.metrics.answer import answer_em
from lmcot.metrics.answer_types import answer_key
from lmcot.metrics.stated_answer import stated_answer

GROUPS = ("stated_right", "stated_wrong", "none")


def rationale_answer_pairs(row: dict[str, Any]) -> list[tuple[str, str]]:
    """(rationale, the reader's answer to it) for each rationale of one prediction row."""
    rationales, answers = row.get("rationales"), row.get("answers")
    if isinstance(rationales, list) and isinstance(answers, list) and len(rationales) == len(answers) and rationales:
        return [(str(r or ""), str(a or "")) for r, a in zip(rationales, answers)]
    if row.get("rationale") is None:
        return []
    return [(str(row.get("rationale") or ""), str(row.get("answer") or ""))]


def _mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def answer_leak(rows: Iterable[dict[str, Any]], same: Callable[[str, str], float] = answer_em) -> dict[str, Any]:
    """The module docstring's figures over ``rows`` (each with ``gold`` and its rationale(s) and
    answer(s)); a share is None when its group is empty. ``same(answer, gold)``: the task's match
    (default: span EM; ``TaskMetric.same_answer`` for numbers and labels)."""
    n = 0
    stated_right: list[float] = []
    follows: list[float] = []
    em: dict[str, list[float]] = {g: [] for g in GROUPS}
    for row in rows:
        gold = str(row.get("gold") or "")
        for rationale, answer in rationale_answer_pairs(row):
            n += 1
            stated = stated_answer(rationale)
            correct = same(answer, gold)
            if stated is None:
                em["none"].append(correct)
                continue
            right = same(stated, gold)
            stated_right.append(right)
            follows.append(same(answer, stated))
            em["stated_right" if right else "stated_wrong"].append(correct)
    return {
        "rationales": n,
        "stated": len(stated_right),
        "stated_share": len(stated_right) / n if n else None,
        "stated_accuracy": _mean(stated_right),
        "reader_follows": _mean(follows),
        "em_by_stated": {g: {"n": len(v), "em": _mean(v)} for g, v in em.items()},
    }


def changed_predictions(before: Iterable[dict[str, Any]], after: Iterable[dict[str, Any]],
                        answer_type: str = "span") -> dict[str, int]:
    """How many of the questions both ran on got another rationale / another answer (as the task
    compares answers: "$18" is "18" for numbers) / another score after a training stage than before
    it (rows matched by ``id``)."""
    old = {str(r.get("id")): r for r in before}
    both = [(old[str(r.get("id"))], r) for r in after if str(r.get("id")) in old]

    def same_answer(a: dict[str, Any], b: dict[str, Any]) -> bool:
        x, y = str(a.get("answer") or ""), str(b.get("answer") or "")
        kx, ky = answer_key(x, answer_type), answer_key(y, answer_type)
        return kx == ky if kx and ky else answer_em(x, y) == 1.0  # no number in either: compare the texts

    return {
        "questions": len(both),
        "rationales_changed": sum(1 for a, b in both if (a.get("rationale") or "").strip() != (b.get("rationale") or "").strip()),
        "answers_changed": sum(1 for a, b in both if not same_answer(a, b)),
        "scores_changed": sum(1 for a, b in both if float(a.get("em") or 0) != float(b.get("em") or 0)),
    }


__all__ = ["GROUPS", "answer_leak", "changed_predictions", "rationale_answer_pairs"]

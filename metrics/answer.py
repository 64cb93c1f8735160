"""Answer metrics: exact match and token F1 exactly as the official benchmark scripts compute them.

The normalisation, EM and F1 below reproduce ``normalize_answer``, ``exact_match_score`` and
``f1_score`` from the official HotpotQA evaluation script (``hotpot_evaluate_v1.py``,
github.com/hotpotqa/hotpot) and the official 2WikiMultihopQA script (``2wikimultihop_evaluate``,
github.com/Alab-NII/2wikimultihop), which share them:

* normalisation: lower-case -> drop ASCII punctuation (``string.punctuation``) -> replace the
  words a/an/the by a space -> collapse white space, composed in that order;
* EM: equality of the normalised strings;
* F1: token overlap counted with repeats (``Counter`` intersection); 0 when either normalised side
  is ``yes``/``no``/``noanswer`` and the two differ, and 0 when nothing is shared (so two answers
  that both normalise to the empty string get EM 1 but F1 0, as in the official scripts).

Only ASCII punctuation is removed: curly quotes, en-dashes and other Unicode survive, as they do
officially. HotpotQA reports fractions and 2Wiki percentages; everything here is a fraction.
(2Wiki v1.1 also takes the best score over answer aliases from a separate file; callers that have
aliases can take the max of these functions themselves.)
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["normalize_answer", "answer_em", "answer_f1", "answer_scores", "aggregate"]

_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")
# Normalised answers for which partial credit makes no sense (official ZERO_METRIC rule).
_SPECIAL = frozenset({"yes", "no", "noanswer"})


def normalize_answer(s: str | None) -> str:
    """Official normalisation: lower, remove punctuation, remove articles, fix white space."""

    def lower(text: str) -> str:
        return text.lower()

    def remove_punc(text: str) -> str:
        return "".join(ch for ch in text if ch not in _PUNCTUATION)

    def remove_articles(text: str) -> str:
        return _ARTICLES.sub(" ", text)

    def white_space_fix(text: str) -> str:
        return " ".join(text.split())

    return white_space_fix(remove_articles(remove_punc(lower(_as_text(s)))))


def answer_em(pred: str | None, gold: str | None) -> float:
    """Exact match (1.0 or 0.0) of the normalised prediction and gold answer."""
    return float(normalize_answer(pred) == normalize_answer(gold))


def answer_f1(pred: str | None, gold: str | None) -> float:
    """Token-level F1 between the normalised prediction and gold answer."""
    return answer_scores(pred, gold)[1]


def answer_scores(pred: str | None, gold: str | None) -> tuple[float, float, float, float]:
    """Return ``(em, f1, precision, recall)`` for one prediction, per the official scripts."""
    norm_pred = normalize_answer(pred)
    norm_gold = normalize_answer(gold)
    em = float(norm_pred == norm_gold)

    if (norm_pred in _SPECIAL or norm_gold in _SPECIAL) and norm_pred != norm_gold:
        return em, 0.0, 0.0, 0.0

    pred_tokens = norm_pred.split()
    gold_tokens = norm_gold.split()
    num_same = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
    if num_same == 0:
        return em, 0.0, 0.0, 0.0
    precision = num_same / len(pred_tokens)
    recall = num_same / len(gold_tokens)
    f1 = 2 * precision * recall / (precision + recall)
    return em, f1, precision, recall


def aggregate(rows: Iterable[tuple[float, float] | Mapping[str, Any]]) -> dict[str, float | int]:
    """Mean EM and F1 over rows of ``(em, f1, ...)`` tuples or mappings with ``em``/``f1`` keys.

    Returns ``{"em": mean, "f1": mean, "n": count}`` with fractions in [0, 1]; an empty input
    gives ``{"em": 0.0, "f1": 0.0, "n": 0}``.
    """
    n = 0
    em_sum = 0.0
    f1_sum = 0.0
    for row in rows:
        if isinstance(row, Mapping):
            em, f1 = row["em"], row["f1"]
        else:
            em, f1 = row[0], row[1]
        em_sum += float(em)
        f1_sum += float(f1)
        n += 1
    if n == 0:
        return {"em": 0.0, "f1": 0.0, "n": 0}
    return {"em": em_sum / n, "f1": f1_sum / n, "n": n}


def _as_text(value: Any) -> str:
    # A missing prediction (None) scores like an empty answer; numbers etc. are stringified.
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value)

"""Answer types (``data.answer_type``): what counts as the same answer for a task.

    number_scores("The answer is $18.00", "18")        -> (1.0, 1.0)
    label_scores("Entailment.", "entailment", labels=("entailment", "neutral", "contradiction"))
                                                       -> (1.0, 1.0, False)   # em, f1, off_label
    answer_key("1,000", "number") == answer_key("1000.0", "number")

* ``span``: the official HotpotQA / 2Wiki EM and token F1 (``metrics/answer.py``).
* ``number``: the number a text gives is compared with the gold number. "$18.00", "18", "18.", "1,000",
  "The answer is 18 dollars" and "3/4" are read as numbers (a stated answer, "... the answer is X", is read
  first; otherwise the text's last number). EM is numeric equality with relative tolerance 1e-6; F1 equals
  EM (partial credit for a number that shares digits would be noise).
* ``label``: a closed set of classes. Case-insensitive equality after dropping ASCII punctuation and
  collapsing white space (no article removal: "a" may be a label; a number's minus sign and a label of
  punctuation alone, "+" / "-", are kept). With ``labels`` given, a prediction
  outside the set is wrong and flagged ``off_label``. F1 equals EM.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from lmcot.answer_text import normalize_label, numbers_in
from lmcot.metrics.answer import answer_scores, normalize_answer
from lmcot.metrics.stated_answer import stated_answer

__all__ = ["ANSWER_TYPES", "REL_TOL", "answer_key", "label_scores", "normalize_label", "number_scores",
           "parse_number"]

ANSWER_TYPES = ("span", "number", "label")
REL_TOL = 1e-6


def parse_number(text: str | None) -> float | None:
    """The number ``text`` gives, or None: the last number of its stated answer ("So the answer is 18
    dollars"), else the last number of the whole text."""
    stated = stated_answer(text or "")
    for part in ([stated] if stated else []) + [text or ""]:
        found = numbers_in(part)
        if found:
            return found[-1]
    return None


def number_scores(pred: str | None, gold: str | None) -> tuple[float, float]:
    """(em, f1) under ``number``: 1.0 when both give a number and they agree within ``REL_TOL``."""
    p, g = parse_number(pred), parse_number(gold)
    em = float(p is not None and g is not None and math.isclose(p, g, rel_tol=REL_TOL))
    return em, em


def label_scores(pred: str | None, gold: str | None, labels: Sequence[str] | None = None) -> tuple[float, float, bool]:
    """(em, f1, off_label) under ``label``: off_label when ``labels`` are given and the prediction is none of them."""
    p = normalize_label(pred)
    off = labels is not None and p not in {normalize_label(x) for x in labels}
    em = float(not off and p == normalize_label(gold))
    return em, em, off


def answer_key(answer: str | None, answer_type: str = "span") -> str:
    """The form under which two answers count as the same (self-consistency voting): the official
    normalisation for spans, the number's value for numbers ("" when none), the normalised label."""
    if answer_type == "number":
        value = parse_number(answer)
        return "" if value is None else format(value + 0.0, ".9g")  # + 0.0: -0 and 0 are one answer
    if answer_type == "label":
        return normalize_label(answer)
    return normalize_answer(answer)


def span_scores(pred: str | None, gold: str | None) -> tuple[float, float]:
    em, f1, _, _ = answer_scores(pred, gold)
    return em, f1

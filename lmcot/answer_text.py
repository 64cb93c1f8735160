"""Reading answers as text: the numbers in a text and the normal form of a label.

The scoring rules built on these live in ``lmcot.metrics.answer_types``; the data loaders use them to
refuse a gold answer that its task cannot score (a gold that is no number under ``answer_type:
number``, a label outside ``data.labels``) before any paid call.
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Sequence

__all__ = ["gold_problem", "normalize_label", "numbers_in"]

# A number: optional sign (not glued to a word: "COVID-19" is 19, not -19), digits with optional
# thousands commas, decimals, an exponent, and an optional "/ denominator" (a fraction such as 3/4).
_NUMBER = re.compile(
    r"(?:(?<![\w.])[-+])?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?(?:\s*/\s*\d+(?:\.\d+)?)?"
    r"|(?:(?<![\w.])[-+])?\.\d+")
_PUNCTUATION = frozenset(string.punctuation)
_SIGN_BEFORE_CURRENCY = re.compile(r"(?<![\w.])([-+])([$€£¥])(?=\d)")
# A minus sign that belongs to a number ("-1", not the dash of "A-1"): kept when punctuation is dropped.
_MINUS_OF_A_NUMBER = re.compile(r"(?<![\w.])-(?=\d)")


def _value(token: str) -> float | None:
    token = token.replace(",", "").replace(" ", "")
    try:
        if "/" in token:
            top, bottom = token.split("/", 1)
            return float(top) / float(bottom) if float(bottom) else None
        return float(token)
    except ValueError:
        return None


def _ascii_minus(text: str | None) -> str:
    """``text`` with the Unicode minus and the en dash written as "-" (both stand for a minus sign)."""
    return (text or "").replace("\u2212", "-").replace("\u2013", "-")


def numbers_in(text: str | None) -> list[float]:
    """Every number in ``text``, in order ("$1,234.50" -> 1234.5, "3/4" -> 0.75; a Unicode minus counts)."""
    text = _ascii_minus(text)
    text = _SIGN_BEFORE_CURRENCY.sub(r"\2\1", text)  # "-$5" is -5, as "$-5" is
    values = (_value(m.group(0)) for m in _NUMBER.finditer(text))
    return [v for v in values if v is not None and math.isfinite(v)]


def normalize_label(text: str | None) -> str:
    """Lower case, ASCII punctuation dropped, white space collapsed (articles kept: "a" may be a label).
    Punctuation that is the label stays: a number's sign ("-1" is not "1"; "+1" is "1"), and a label of
    punctuation alone ("+", "-") keeps its marks, without a trailing full stop or quotes."""
    text = " ".join(_ascii_minus(text).lower().split())
    signs = {m.start() for m in _MINUS_OF_A_NUMBER.finditer(text)}
    kept = " ".join("".join(ch for i, ch in enumerate(text) if ch not in _PUNCTUATION or i in signs).split())
    return kept or text.strip(" \"'`()[]{}*").rstrip(".").strip()


def gold_problem(answer: str, answer_type: str, labels: Sequence[str] | None = None) -> str | None:
    """Why ``answer`` cannot be a gold answer of its task, or None when it can."""
    if answer_type == "number" and len(numbers_in(answer)) != 1:
        # One number ("$18.00", "1,000", "3/4", "18 dollars"): a worked solution with many is not a gold number.
        return f"gold answer {answer[:60]!r} is not a number (data.answer_type: number)"
    if answer_type == "label" and labels and normalize_label(answer) not in {normalize_label(x) for x in labels}:
        return f"gold answer {answer[:60]!r} is not one of data.labels {list(labels)}"
    return None

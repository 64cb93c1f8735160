"""Self-consistency: majority vote over normalised answers, ties broken by first appearance."""

from __future__ import annotations

from collections import Counter
from typing import Callable

from lmcot.metrics.answer import normalize_answer


def majority_vote(answers: list[str], key: Callable[[str], str] | None = None) -> int:
    """Index of the winning answer. Answers are compared under ``key``, the task's answer form
    (``TaskMetric.vote_key``: "$18.00" == "18" for numbers), by default the official HotpotQA
    normalisation ("The Beatles." == "beatles"); answers whose key is empty (no answer, or a label off the
    task's set) vote only if all do, and then under the official normalisation;
    among answers with the most votes the one that appeared first wins, so the result is deterministic."""
    if not answers:
        raise ValueError("majority_vote needs at least one answer")
    keys = [(key or normalize_answer)(a or "") for a in answers]
    candidates = [i for i, k in enumerate(keys) if k]
    if not candidates:  # none counts under the task's key (all off-label, say): the most common answer text
        keys = [normalize_answer(a or "") for a in answers]
        candidates = [i for i, k in enumerate(keys) if k] or list(range(len(keys)))
    counts = Counter(keys[i] for i in candidates)
    best = max(counts.values())
    return next(i for i in candidates if counts[keys[i]] == best)

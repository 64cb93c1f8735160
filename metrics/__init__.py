"""lmcot.metrics: answer metrics (official HotpotQA / 2Wiki rules); rationale metrics live beside."""

from .answer import aggregate, answer_em, answer_f1, answer_scores, normalize_answer

__all__ = [
    "normalize_answer",
    "answer_em",
    "answer_f1",
    "answer_scores",
    "aggregate",
]

"""lmcot.metrics: answer EM/F1 (official HotpotQA / 2Wiki rules) and the eight rationale-quality aspects."""

from .answer import aggregate, answer_em, answer_f1, answer_scores, normalize_answer
from .rationale import ASPECT_DEFINITIONS, RationaleScorer, summarize

__all__ = [
    "normalize_answer",
    "answer_em",
    "answer_f1",
    "answer_scores",
    "aggregate",
    "ASPECT_DEFINITIONS",
    "RationaleScorer",
    "summarize",
]

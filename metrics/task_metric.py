"""The one place that decides how a task's answers are scored.

    task = TaskMetric.from_config(config, metric=my_metric)     # data.answer_type, data.labels, the user metric
    task.score("$18.00", example)     -> {"em": 1.0, "f1": 1.0, "metric": 1.0}
    task.vote_key("18 dollars")       -> "18"   (self-consistency compares answers in this form)

Evaluation (every method, every stage's dev report), KD's keep filter, RL's answer reward, self-consistency
voting and ``lmcot experiment`` all score through a ``TaskMetric``, so a task's answers mean the same
everywhere. ``em`` / ``f1`` follow ``data.answer_type`` (``metrics/answer_types.py``); ``metric`` is the
user's own metric (``metrics/user_metric.py``) when one is given; ``off_label`` marks a label outside
``data.labels``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Callable

from lmcot.metrics.answer_types import answer_key, label_scores, number_scores, span_scores
from lmcot.metrics.user_metric import UserMetric, as_user_metric

__all__ = ["TaskMetric", "vote_key_for"]

_DESCRIPTIONS = {"span": "span: official EM / token F1",
                 "number": "number: numeric match, relative tolerance 1e-6; F1 = EM",
                 "label": "label: case-insensitive match without punctuation; F1 = EM"}


@dataclass(frozen=True)
class TaskMetric:
    answer_type: str = "span"
    labels: tuple[str, ...] | None = None
    metric: UserMetric | None = None

    @classmethod
    def from_config(cls, config: Any, metric: Callable[..., Any] | str | None = None) -> TaskMetric:
        """From an ``LMCoTConfig`` (``data.answer_type``, ``data.labels``, ``metric``); ``metric`` (a callable
        or a spec, e.g. from ``compile(..., metric=...)``) takes the place of ``config.metric``."""
        data = config.data
        user = as_user_metric(metric if metric is not None else config.metric)
        return cls(data.answer_type, tuple(data.labels) if data.labels else None, user)

    def em_f1(self, answer: str | None, gold: str | None) -> tuple[float, float]:
        """EM and F1 of ``answer`` against ``gold`` under the answer type."""
        if self.answer_type == "number":
            return number_scores(answer, gold)
        if self.answer_type == "label":
            em, f1, _ = label_scores(answer, gold, self.labels)
            return em, f1
        return span_scores(answer, gold)

    def score(self, answer: str | None, example: Any, prediction: Any = None) -> dict[str, Any]:
        """``{"em", "f1"}`` of ``answer`` for ``example``, plus ``metric`` (the user metric on ``prediction``,
        default ``Prediction(answer=answer)``) and ``off_label`` when they apply."""
        gold = example.get("answer") if hasattr(example, "get") else getattr(example, "answer", None)
        em, f1 = self.em_f1(answer, None if gold is None else str(gold))
        out: dict[str, Any] = {"em": em, "f1": f1}
        if self.answer_type == "label" and self.labels is not None:
            out["off_label"] = label_scores(answer, "", self.labels)[2]
        if self.metric is not None:
            if prediction is None:
                import dspy

                prediction = dspy.Prediction(answer=answer or "")
            out["metric"] = self.metric(example, prediction)
        return out

    def same_answer(self, answer: str | None, gold: str | None) -> float:
        """1.0 when ``answer`` matches ``gold`` under the answer type (its EM), else 0.0: how a stated
        answer is compared with the gold or with the reader's answer (``lmcot.metrics.answer_leak``)."""
        return self.em_f1(answer, gold)[0]

    def vote_key(self, answer: str | None) -> str:
        return vote_key_for(self.answer_type, self.labels)(answer)

    @property
    def metric_name(self) -> str | None:
        return self.metric.name if self.metric is not None else None

    def describe(self) -> str:
        """One line: how answers are scored (printed with tables)."""
        text = _DESCRIPTIONS[self.answer_type]
        if self.labels:
            text += f" (labels: {', '.join(self.labels)})"
        if self.metric is not None:
            text += f"; metric: {self.metric.name}"
        return text


def _vote_key(answer: str | None, answer_type: str, labels: tuple[str, ...] | None) -> str:
    if answer_type == "label" and labels is not None and label_scores(answer, "", labels)[2]:
        return ""  # an off-label answer is wrong whatever its count: it votes only when every answer is off-label
    return answer_key(answer, answer_type)


def vote_key_for(answer_type: str = "span", labels: Sequence[str] | None = None) -> Callable[[str | None], str]:
    """The voting key of an answer type (and label set) as a plain function (programs keep it; it
    deep-copies). An answer outside ``labels`` gets the empty key, which ``majority_vote`` sets aside."""
    return functools.partial(_vote_key, answer_type=answer_type, labels=tuple(labels) if labels else None)

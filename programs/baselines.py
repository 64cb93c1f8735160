"""The paper's two baselines, both on the large LM alone."""

from __future__ import annotations

import dspy

from lmcot.programs.signatures import AnswerDirectly


class StandardPrompting(dspy.Module):
    """The large LM answers from question and context directly."""

    def __init__(self, large_lm: dspy.LM | None = None):
        super().__init__()
        self.answer = dspy.Predict(AnswerDirectly)
        self.answer.lm = large_lm

    def forward(self, question: str, context: str) -> dspy.Prediction:
        return self.answer(question=question, context=context)


class CoTPrompting(dspy.Module):
    """The large LM reasons for itself ("Let's think step by step") and then answers."""

    def __init__(self, large_lm: dspy.LM | None = None):
        super().__init__()
        self.answer = dspy.ChainOfThought(AnswerDirectly)
        self.answer.predict.lm = large_lm

    def forward(self, question: str, context: str) -> dspy.Prediction:
        pred = self.answer(question=question, context=context)
        return dspy.Prediction(rationale=pred.reasoning, answer=pred.answer)

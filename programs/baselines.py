"""The paper's two baselines, both on the large LM alone."""

from __future__ import annotations

import dspy

from lmcot.programs.answer_adapter import answer_adapter_for
from lmcot.programs.signatures import AnswerDirectly, context_inputs
from lmcot.reply_cache import attempts_for, parsed_reply

STEP_BY_STEP = "Let's think step by step in order to find the answer."


class StandardPrompting(dspy.Module):
    """The large LM answers from question and context directly."""

    def __init__(self, large_lm: dspy.LM | None = None):
        super().__init__()
        self.answer = dspy.Predict(AnswerDirectly)
        self.answer.lm = large_lm

    def forward(self, question: str, context: str | None = None) -> dspy.Prediction:
        # A reply that does not parse is retried and never cached (lmcot.reply_cache); an in-process
        # reader gets the plain answer prompt (lmcot.programs.answer_adapter). A task without a context
        # gets the context-free signature (no empty "Context:" field).
        adapter = answer_adapter_for(self.answer.lm)
        inputs = context_inputs(self.answer.signature, question, context)

        def call():
            if adapter is None:
                return self.answer(**inputs)
            with dspy.context(adapter=adapter):
                return self.answer(**inputs)

        return parsed_reply(call, what="large LM answer", attempts=attempts_for(self.answer.lm))


class CoTPrompting(dspy.Module):
    """The large LM reasons for itself ("Let's think step by step") and then answers."""

    def __init__(self, large_lm: dspy.LM | None = None):
        super().__init__()
        # DSPy 3.4's reasoning field has no description; the paper's CoT baseline is zero-shot
        # "Let's think step by step" prompting, so the field says so.
        self.answer = dspy.ChainOfThought(AnswerDirectly, rationale_field=dspy.OutputField(desc=STEP_BY_STEP))
        self.answer.predict.lm = large_lm

    def forward(self, question: str, context: str | None = None) -> dspy.Prediction:
        adapter = answer_adapter_for(self.answer.predict.lm)
        inputs = context_inputs(self.answer.predict.signature, question, context)

        def call():
            if adapter is None:
                return self.answer(**inputs)
            with dspy.context(adapter=adapter):
                return self.answer(**inputs)

        pred = parsed_reply(call, what="large LM answer", attempts=attempts_for(self.answer.predict.lm))
        return dspy.Prediction(rationale=pred.reasoning, answer=pred.answer)

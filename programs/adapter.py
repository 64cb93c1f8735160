"""The small LM's prompt: plain text in, the whole completion out.

DSPy's ChatAdapter asks the model to reproduce ``[[ ## field ## ]]`` markers, which a <1B model (and
FLAN-T5 above all) rarely does. ``RationaleAdapter`` instead writes the signature's instructions as
the system turn, the inputs as labelled blocks in the user turn, and takes the whole completion as
the single output field. KD and RL build their training prompts with :func:`rationale_messages`, the
same code path as inference, so the prompt a student is trained on is the prompt it is run with.
"""

from __future__ import annotations

from typing import Any

import dspy

from lmcot._dspy_reaches import BlankEmptyCompletions
from lmcot.programs.signatures import Rationalize, context_inputs


def _title(name: str) -> str:
    return name.replace("_", " ").capitalize()


class RationaleAdapter(BlankEmptyCompletions):
    """Plain-text adapter for signatures with exactly one output field. An empty completion (a small
    LM that stops at once) is an empty rationale, not a failed call."""

    def format(self, signature: type[dspy.Signature], demos: list[dict[str, Any]], inputs: dict[str, Any]) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = [{"role": "system", "content": signature.instructions.strip()}]
        for demo in demos:
            messages.append({"role": "user", "content": self._user(signature, demo)})
            messages.append({"role": "assistant", "content": str(demo[self._output(signature)]).strip()})
        messages.append({"role": "user", "content": self._user(signature, inputs)})
        return messages

    def parse(self, signature: type[dspy.Signature], completion: str) -> dict[str, Any]:
        return {self._output(signature): (completion or "").strip()}

    @staticmethod
    def _output(signature: type[dspy.Signature]) -> str:
        outputs = list(signature.output_fields)
        if len(outputs) != 1:
            raise ValueError(f"RationaleAdapter needs exactly one output field, {signature.__name__} has {outputs}")
        return outputs[0]

    @staticmethod
    def _user(signature: type[dspy.Signature], values: dict[str, Any]) -> str:
        # Context first, question last: the question sits next to where the model starts writing,
        # and left-truncation of an over-long prompt cuts context, never the question.
        names = sorted(signature.input_fields, key=lambda n: (n != "context", list(signature.input_fields).index(n)))
        blocks = [f"{_title(n)}:\n{str(values.get(n, '')).strip()}" for n in names]
        # The output cue lets seq2seq and base (no chat template) models know what to write.
        blocks.append(f"{_title(RationaleAdapter._output(signature))}:")
        return "\n\n".join(blocks)


def rationale_messages(question: str, context: str | None, signature: type[dspy.Signature] = Rationalize, *,
                       form: str | None = None, demos: list | None = None) -> list[dict[str, Any]]:
    """The chat messages the small LM sees for one question (inference, KD and RL alike); a question
    without a context gets the context-free prompt, as ``LMGuidedCoT`` sends it. ``form``
    (``kd.rationale_form``: full | evidence) picks the signature of that rationale form instead;
    ``demos``: the predictor's few-shot examples, when it has any (none by default)."""
    if form is not None:
        from lmcot.programs.signatures import rationalize_signature

        signature = rationalize_signature(form)
    inputs = context_inputs(signature, question, context)
    return RationaleAdapter().format(inputs.pop("signature", signature), demos=list(demos or []), inputs=inputs)

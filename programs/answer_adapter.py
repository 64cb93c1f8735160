"""The large LM's prompt when it is an in-process model (``large_lm.backend: transformers``).

DSPy's ChatAdapter asks for ``[[ ## answer ## ]]`` markers; a small in-process reader rarely writes
them, so each call generated twice (markers, then DSPy's JSON fallback) and echoed dictionaries were
scored as answers. ``PlainAnswerAdapter`` writes the signature's instructions as the system turn,
the inputs as labelled blocks, and asks for a plain reply:

* answer-only signatures (``Answer``, ``AnswerDirectly``): the first non-empty line of the reply,
  without an "Answer:" / "The answer is" label or a final full stop (``leading_answer``);
* with a reasoning field (CoT prompting): "think step by step, then a last line ``Answer: ...``";
  the answer is the reply's last answer statement ("Answer: X", "the answer is X":
  ``lmcot.metrics.stated_answer``).

A reply with no answer in it raises ``AdapterParseError``: the example fails with that error and is
never scored with a made-up answer. There is no fallback to another format.
"""

from __future__ import annotations

from typing import Any

import dspy
from dspy.adapters.base import Adapter
from dspy.utils.exceptions import AdapterParseError

from lmcot.metrics.stated_answer import answer_statements, leading_answer

_REASON = {"reasoning", "rationale"}


def _title(name: str) -> str:
    return name.replace("_", " ").capitalize()


class PlainAnswerAdapter(Adapter):
    """Plain-text prompts and strict parsing for the answer step (module docstring)."""

    def format(self, signature: type[dspy.Signature], demos: list[dict[str, Any]], inputs: dict[str, Any]) -> list[dict[str, Any]]:
        outputs = list(signature.output_fields)
        reason = [f for f in outputs if f in _REASON]
        system = signature.instructions.strip()
        if reason:
            system += " Think step by step, then give the answer on a last line that starts with 'Answer:'."
        else:
            system += " Reply with the answer only."
        blocks = [f"{_title(n)}:\n{str(inputs.get(n, '')).strip()}" for n in signature.input_fields]
        blocks.append("Reasoning:" if reason else "Answer:")
        return [{"role": "system", "content": system}, {"role": "user", "content": "\n\n".join(blocks)}]

    def parse(self, signature: type[dspy.Signature], completion: str) -> dict[str, Any]:
        outputs = list(signature.output_fields)
        text = (completion or "").strip()
        reason = [f for f in outputs if f in _REASON]
        answer_field = next(f for f in outputs if f not in _REASON)
        if reason:
            # The reasoning is what comes before the last answer statement (lmcot.metrics.stated_answer).
            statements = answer_statements(text)
            answer = statements[-1].span if statements else ""
            body = text[: statements[-1].start].strip() if statements else text
            result = {reason[0]: body, answer_field: answer}
        else:
            answer = leading_answer(text)
            result = {answer_field: answer}
        if not answer:
            raise AdapterParseError(adapter_name="PlainAnswerAdapter", signature=signature, lm_response=completion,
                                    message="the reader's reply holds no answer")
        return result


def answer_adapter_for(large_lm: dspy.LM | None) -> Adapter | None:
    """``PlainAnswerAdapter`` for an in-process large LM; None (DSPy's configured adapter) otherwise."""
    from lmcot.hf_engine import hf_engine_of

    return PlainAnswerAdapter() if large_lm is not None and hf_engine_of(large_lm) is not None else None

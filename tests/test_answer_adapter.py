"""The in-process reader's plain answer prompt: no [[ ## ]] markers, strict parsing, no fallback."""

from __future__ import annotations

import dspy
import pytest
from dspy.utils.exceptions import AdapterParseError

from lmcot.programs.answer_adapter import PlainAnswerAdapter
from lmcot.programs.signatures import Answer, AnswerDirectly

COT = dspy.ChainOfThought(AnswerDirectly).predict.signature


def test_prompt_is_plain_text():
    msgs = PlainAnswerAdapter().format(Answer, [], {"question": "Q?", "context": "C.", "rationale": "R."})
    text = "\n".join(m["content"] for m in msgs)
    assert "[[" not in text and "Rationale:\nR." in text and text.endswith("Answer:")


@pytest.mark.parametrize("reply, answer", [("Vienna", "Vienna"), ("Answer: Vienna.\nBecause ...", "Vienna"),
                                           ("\n  \"Vienna\"  \n", "Vienna"),
                                           # SmolLM2-135M announces the answer on a line of its own
                                           ("The answer is:\nVienna", "Vienna"), ("Answer:\n\nVienna.", "Vienna"),
                                           # the label is never part of the answer, in any of its forms
                                           ("The answer is Vienna.", "Vienna"), ("Answer - Vienna", "Vienna"),
                                           ("Answer\nVienna", "Vienna"), ("Answering machines", "Answering machines"),
                                           # a minus sign is the answer's, never a label's dash
                                           ("The answer is -5.", "-5"), ("Answer: -2", "-2")])
def test_answer_is_the_first_line(reply, answer):
    assert PlainAnswerAdapter().parse(Answer, reply) == {"answer": answer}


def test_cot_reply_needs_an_answer_line():
    out = PlainAnswerAdapter().parse(COT, "Keller studied in Vienna.\nAnswer: Vienna")
    assert out == {"reasoning": "Keller studied in Vienna.", "answer": "Vienna"}
    assert PlainAnswerAdapter().parse(COT, "She studied there. So the answer is Vienna.") == {
        "reasoning": "She studied there.", "answer": "Vienna"}
    # SmolLM2-135M's way of saying it (greedy, configs/real_reader.yaml)
    assert PlainAnswerAdapter().parse(COT, 'The answer to this question is: "The Anti-Nebraska movement"') == {
        "reasoning": "", "answer": "The Anti-Nebraska movement"}
    # a markdown label, and a revision on one line: the last statement is the answer
    assert PlainAnswerAdapter().parse(COT, "Paris is the capital.\n**Answer**: Paris") == {
        "reasoning": "Paris is the capital.", "answer": "Paris"}
    assert PlainAnswerAdapter().parse(COT, "At first the answer is 5. But 2 were eaten, so the answer is 3.") == {
        "reasoning": "At first the answer is 5. But 2 were eaten,", "answer": "3"}
    remark = "It is in France. So the answer is Paris. I hope this answer is helpful."
    assert PlainAnswerAdapter().parse(COT, remark) == {"reasoning": "It is in France.", "answer": "Paris"}
    with pytest.raises(AdapterParseError):
        PlainAnswerAdapter().parse(COT, "I am not sure what to say here")


def test_empty_reply_is_an_error_not_an_answer():
    with pytest.raises(AdapterParseError):
        PlainAnswerAdapter().parse(Answer, "   \n ")
    with pytest.raises(AdapterParseError):  # an announcement with nothing after it
        PlainAnswerAdapter().parse(Answer, "The answer to this question is:")
    with pytest.raises(AdapterParseError):  # a label whose answer is only punctuation: no answer, not the next line
        PlainAnswerAdapter().parse(Answer, "Answer: .\nBecause Vienna is a city")


def test_failed_answer_call_keeps_the_rationale():
    """predict_all records the rationale of an example whose answer call failed."""
    from lmcot.programs.evaluation import predict_all
    from lmcot.programs import LMGuidedCoT

    class Boom(dspy.Module):
        lm = None
        def __call__(self, **kwargs):
            raise RuntimeError("down")

    program = LMGuidedCoT()
    program.write_rationale = lambda q, c, config: "a rationale"  # the one small-LM call both paths make
    program.answer = Boom()
    ex = dspy.Example(id="1", question="Q?", context="C.", answer="A").with_inputs("question", "context")
    row = predict_all(program, [ex], concurrency=1, label="guided", progress=False)[0]
    assert row["error"] and "answer call failed" in row["error"] and row["rationale"] == "a rationale"

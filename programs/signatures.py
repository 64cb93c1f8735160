"""What each step of LM-guided CoT does (the *how* lives in the modules and the LMs they run on)."""

import functools

import dspy


class Rationalize(dspy.Signature):
    """Read the context and write a short step-by-step rationale that connects the facts needed to
    answer the question. Reason only from the context."""

    question: str = dspy.InputField()
    context: str = dspy.InputField()
    rationale: str = dspy.OutputField(desc="step-by-step reasoning grounded in the context")


class RationalizeEvidence(dspy.Signature):
    """Read the context and write a short step-by-step rationale that quotes the facts from the context
    needed to answer the question and connects them. Give the reasoning and the evidence only: do not
    state a final answer, another model will answer from your rationale."""

    question: str = dspy.InputField()
    context: str = dspy.InputField()
    rationale: str = dspy.OutputField(desc="reasoning and evidence from the context, without a final answer")


# kd.rationale_form -> the small LM's signature (one choice, used alike at training and inference).
RATIONALE_FORMS = {"full": Rationalize, "evidence": RationalizeEvidence}


def rationalize_signature(form: str = "full") -> type[dspy.Signature]:
    """The Rationalize signature of a rationale form (``full`` or ``evidence``)."""
    if form not in RATIONALE_FORMS:
        raise ValueError(f"unknown rationale form {form!r}; forms are {', '.join(RATIONALE_FORMS)}")
    return RATIONALE_FORMS[form]


class Answer(dspy.Signature):
    """Answer the question from the context, using the rationale as a guide. Give a short answer
    span (an entity, a date, a number, or yes/no), not a sentence."""

    question: str = dspy.InputField()
    context: str = dspy.InputField()
    rationale: str = dspy.InputField(desc="a rationale written by another model; it may contain mistakes")
    answer: str = dspy.OutputField(desc="a short span, as in extractive QA")


class AnswerDirectly(dspy.Signature):
    """Answer the question from the context. Give a short answer span (an entity, a date, a number,
    or yes/no), not a sentence."""

    question: str = dspy.InputField()
    context: str = dspy.InputField()
    answer: str = dspy.OutputField(desc="a short span, as in extractive QA")


# Context-free forms (a task without a context passage): the same fields less ``context``, and
# instructions that do not send the model looking for one. Every prompt of such a task (rationale,
# answer, baselines, teacher) leaves the field out instead of showing an empty "Context:" block.
_NO_CONTEXT_INSTRUCTIONS = {
    Rationalize.instructions: "Write a short step-by-step rationale that works out the answer to the question.",
    RationalizeEvidence.instructions: "Write a short step-by-step rationale that works out the question. Give the "
                                      "reasoning only: do not state a final answer, another model will answer "
                                      "from your rationale.",
    Answer.instructions: "Answer the question, using the rationale as a guide. Give a short answer (an entity, a "
                         "date, a number, a label, or yes/no), not a sentence.",
    AnswerDirectly.instructions: "Answer the question. Give a short answer (an entity, a date, a number, a label, "
                                 "or yes/no), not a sentence.",
}


def has_context(context: object) -> bool:
    """Whether an example has a context to show (``None`` and blank text: no)."""
    return context is not None and bool(str(context).strip())


@functools.lru_cache(maxsize=None)
def without_context(signature: type[dspy.Signature]) -> type[dspy.Signature]:
    """``signature`` without its ``context`` input (and with context-free instructions when it is one of
    lmcot's); a signature with no ``context`` field comes back as it is."""
    if "context" not in signature.input_fields:
        return signature
    instructions = _NO_CONTEXT_INSTRUCTIONS.get(signature.instructions, signature.instructions)
    out = signature.delete("context").with_instructions(instructions)
    if signature.instructions in _NO_CONTEXT_INSTRUCTIONS and "answer" in out.output_fields:
        out = out.with_updated_fields("answer", desc="a short answer")  # not "a span": there is no passage
    return out


def for_context(signature: type[dspy.Signature], context: object) -> type[dspy.Signature]:
    """The signature to call for one example: ``signature`` with a context, its context-free form without."""
    return signature if has_context(context) else without_context(signature)


def context_inputs(signature: type[dspy.Signature], question: str, context: object, **more) -> dict:
    """Keyword arguments of one predictor call: question and context, or, for an example without a
    context, the question and the context-free ``signature=`` (DSPy's per-call signature)."""
    if has_context(context):
        return {"question": question, "context": context, **more}
    return {"question": question, "signature": without_context(signature), **more}

"""What each step of LM-guided CoT does (the *how* lives in the modules and the LMs they run on)."""

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

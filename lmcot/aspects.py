"""The eight rationale-quality aspects of LM-guided CoT (Lee et al., 2024): the one table.

Each row is an aspect's name, its one-line definition (shown by ``lmcot score`` beside each mean and
the reading of every score: 1 is best), the question the judge LM is asked
(``metrics/rationale/judge.py``), the name of its cheap scorer in ``metrics/rationale/cheap.py`` and
the model that scorer reads, if any (the reference LM, for perplexity; the sentence embedder).
Everything else is derived from it: ``ASPECTS`` (the order everywhere), the config's per-aspect
reward weights and backends, the judge's questions, the cheap scorers. A ninth aspect is one row here
(and its cheap scorer function).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Aspect:
    name: str
    definition: str
    judge_question: str
    cheap_scorer: str
    # Judged against the context passage: n/a (not 0) for a task without one, and left out of its RL reward.
    against_passage: bool = False
    # The model its cheap scorer takes: "lm" (the reference LM), "embedder", or none.
    reads: str | None = None


TABLE: tuple[Aspect, ...] = (
    Aspect("factuality", "The rationale's claims are supported by the context.",
           "Are all claims in the rationale supported by the context?", "factuality", against_passage=True),
    Aspect("relevance", "The rationale is about what the question asks.",
           "Is the rationale relevant to the question, using only information that helps answer it?", "relevance",
           reads="embedder"),
    Aspect("logicality", "Each step follows from the question or the steps before it.",
           "Is the reasoning in the rationale logical, with each step following from the previous ones?",
           "logicality"),
    Aspect("consistency", "The rationale contradicts neither itself nor the context.",
           "Is the rationale free of contradictions, both among its own statements and with the context?",
           "consistency", against_passage=True),
    Aspect("coherence", "The steps connect to one another into one line of reasoning.",
           "Is the rationale coherent, with its sentences connected and in a sensible order?", "coherence",
           reads="embedder"),
    Aspect("fluency", "The rationale is grammatical, well-formed text.",
           "Is the rationale written in fluent, grammatical English?", "fluency", reads="lm"),
    Aspect("naturalness", "The rationale reads as a person would write it.",
           "Does the rationale read naturally, like text a person would write?", "naturalness", reads="lm"),
    Aspect("readability", "The rationale is easy to read.",
           "Is the rationale easy to read and understand?", "readability"),
)

ASPECTS: tuple[str, ...] = tuple(a.name for a in TABLE)
ASPECT_DEFINITIONS: dict[str, str] = {a.name: a.definition for a in TABLE}
JUDGE_QUESTIONS: dict[str, str] = {a.name: a.judge_question for a in TABLE}
PASSAGE_ASPECTS: tuple[str, ...] = tuple(a.name for a in TABLE if a.against_passage)
LM_ASPECTS: tuple[str, ...] = tuple(a.name for a in TABLE if a.reads == "lm")
EMBEDDER_ASPECTS: tuple[str, ...] = tuple(a.name for a in TABLE if a.reads == "embedder")


def parse_select(select: str) -> str | None:
    """How self-consistency picks among its k rationales (``LMGuidedCoT(select=...)``,
    ``eval.select``): ``"vote"`` -> None (one answer per rationale, majority vote); ``"quality"`` ->
    ``"mean"`` (the rationale with the best mean aspect score); ``"quality:<aspect>"`` -> that aspect."""
    if select == "vote":
        return None
    if select == "quality":
        return "mean"
    if select.startswith("quality:") and select.split(":", 1)[1] in ASPECTS:
        return select.split(":", 1)[1]
    raise ValueError(f"select={select!r}: expected 'vote', 'quality' or 'quality:<aspect>' with an aspect "
                     f"among {', '.join(ASPECTS)}")

"""Which model each aspect's cheap scorer reads comes from the scorer itself, not from retyped lists."""

from __future__ import annotations

import inspect

from lmcot.aspects import ASPECTS
from lmcot.metrics.rationale.cheap import CHEAP_SCORERS, EMBEDDER_ASPECTS, LM_ASPECTS


def test_model_aspects_are_read_off_the_cheap_scorers():
    assert LM_ASPECTS == ("fluency", "naturalness")
    assert EMBEDDER_ASPECTS == ("relevance", "coherence")
    for aspect in ASPECTS:
        keywords = {p for p in inspect.signature(CHEAP_SCORERS[aspect]).parameters} - {
            "question", "context_sentences", "rationale"}
        # Every model a cheap scorer takes is one the RationaleScorer knows how to hand it.
        assert keywords <= {"lm", "embedder"}, (aspect, keywords)
        assert (aspect in LM_ASPECTS) == ("lm" in keywords)
        assert (aspect in EMBEDDER_ASPECTS) == ("embedder" in keywords)

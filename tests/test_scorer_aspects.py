"""Which model each aspect's cheap scorer reads is one column of the aspect table (lmcot.aspects),
and it matches what each scorer takes."""

from __future__ import annotations

import inspect

from lmcot.aspects import ASPECTS, EMBEDDER_ASPECTS, LM_ASPECTS
from lmcot.metrics.rationale.cheap import CHEAP_SCORERS


def test_the_aspect_tables_models_match_the_cheap_scorers_keywords():
    assert LM_ASPECTS == ("fluency", "naturalness")
    assert EMBEDDER_ASPECTS == ("relevance", "coherence")
    for aspect in ASPECTS:
        keywords = {p for p in inspect.signature(CHEAP_SCORERS[aspect]).parameters} - {
            "question", "context_sentences", "rationale"}
        # Every model a cheap scorer takes is one the RationaleScorer knows how to hand it.
        assert keywords <= {"lm", "embedder"}, (aspect, keywords)
        assert (aspect in LM_ASPECTS) == ("lm" in keywords)
        assert (aspect in EMBEDDER_ASPECTS) == ("embedder" in keywords)

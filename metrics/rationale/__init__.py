"""lmcot.metrics.rationale: the eight rationale-quality aspects, scored by an LLM judge or by cheap
reference-free formulas (``cheap.py`` documents every formula in one table).

    from lmcot.metrics.rationale import RationaleScorer, summarize, ASPECT_DEFINITIONS
"""

from lmcot.aspects import ASPECT_DEFINITIONS, PASSAGE_ASPECTS

from .scorer import (LEXICAL, LazyScorer, RationaleScorer, backend_name, check_scorer_models, choose_reference_lm,
                     context_sentences_of, rationale_row, reference_lm_for, reference_name, scorer_from_config,
                     summarize)

__all__ = ["ASPECT_DEFINITIONS", "LEXICAL", "PASSAGE_ASPECTS", "LazyScorer", "RationaleScorer", "backend_name",
           "check_scorer_models", "choose_reference_lm", "context_sentences_of", "rationale_row", "reference_lm_for",
           "reference_name", "scorer_from_config", "summarize"]

"""lmcot.metrics.rationale: the eight rationale-quality aspects, scored by an LLM judge or by cheap
reference-free formulas (``cheap.py`` documents every formula in one table).

    from lmcot.metrics.rationale import RationaleScorer, summarize, ASPECT_DEFINITIONS
"""

from lmcot.aspects import ASPECT_DEFINITIONS

from .scorer import (LEXICAL, RationaleScorer, backend_name, choose_reference_lm, context_sentences_of,
                     reference_lm_for, scorer_from_config, summarize)

__all__ = ["ASPECT_DEFINITIONS", "LEXICAL", "RationaleScorer", "backend_name", "choose_reference_lm",
           "context_sentences_of", "reference_lm_for", "scorer_from_config", "summarize"]

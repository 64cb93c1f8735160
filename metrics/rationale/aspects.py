"""The eight rationale-quality aspects of LM-guided CoT (Lee et al., 2024), one line each.

Shown by ``lmcot score`` beside each mean and used as the reading of every score: 1 is best.
The order is ``lmcot.config.ASPECTS``.
"""

from __future__ import annotations

ASPECT_DEFINITIONS: dict[str, str] = {
    "factuality": "The rationale's claims are supported by the context.",
    "relevance": "The rationale is about what the question asks.",
    "logicality": "Each step follows from the question or the steps before it.",
    "consistency": "The rationale contradicts neither itself nor the context.",
    "coherence": "The steps connect to one another into one line of reasoning.",
    "fluency": "The rationale is grammatical, well-formed text.",
    "naturalness": "The rationale reads as a person would write it.",
    "readability": "The rationale is easy to read.",
}

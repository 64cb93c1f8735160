"""Declarative programs: LM-guided CoT and the paper's baselines (installed as ``lmcot.programs``)."""

from lmcot.programs.adapter import RationaleAdapter, rationale_messages
from lmcot.programs.baselines import CoTPrompting, StandardPrompting
from lmcot.programs.lm_guided_cot import LMGuidedCoT
from lmcot.programs.self_consistency import CoTSelfConsistency
from lmcot.programs.signatures import Answer, AnswerDirectly, Rationalize, RationalizeEvidence
from lmcot.programs.voting import majority_vote

__all__ = [
    "Answer", "AnswerDirectly", "CoTPrompting", "CoTSelfConsistency", "LMGuidedCoT", "RationaleAdapter", "Rationalize",
    "RationalizeEvidence", "StandardPrompting", "majority_vote", "rationale_messages",
]

"""lmcot: LM-guided chain-of-thought — a small LM writes the rationale, a large frozen LM answers.

    from lmcot import build_lm, load_config
    from lmcot.programs import LMGuidedCoT, StandardPrompting, CoTPrompting
    from lmcot.optimizers import LMCoTCompiler
    from lmcot.metrics import answer_em, answer_f1

Names are loaded on first use so that ``import lmcot`` (and the CLI's start) stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "LMCoTConfig": "lmcot.config",
    "load_config": "lmcot.config",
    "build_lm": "lmcot.lms",
    "build_lms": "lmcot.lms",
    "configure_cache": "lmcot.lms",
    "load_examples": "lmcot.data",
    "load_split": "lmcot.splits",
    "evaluate_methods": "lmcot.programs.evaluation",
    "evaluate_program": "lmcot.programs.evaluation",
    "evaluate_from_config": "lmcot.programs.evaluation",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'lmcot' has no attribute {name!r}")


__all__ = ["__version__", *_LAZY]

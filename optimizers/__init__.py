"""The compiler and its stages (installed as ``lmcot.optimizers``): teacher bootstrap and distillation
(``kd``), then RL on rationale quality and answer F1 (``rl``)."""

from lmcot.optimizers.compiler import LMCoTCompiler, compile_from_config

__all__ = ["LMCoTCompiler", "compile_from_config"]

"""Contract test for optimizers/_trl_reaches.py: TRL still tokenizes string prompts in an overridable
``_tokenize_prompts(self, prompts)`` (tests/test_rl.py checks the ids match inference)."""

from __future__ import annotations

import inspect

import pytest


@pytest.mark.parametrize("name", ["GRPOTrainer", "RLOOTrainer"])
def test_trl_trainers_tokenize_prompts_in_an_overridable_method(name):
    import trl

    method = getattr(getattr(trl, name), "_tokenize_prompts", None)
    assert method is not None, f"TRL {name} no longer has _tokenize_prompts: rework optimizers/_trl_reaches.py"
    assert list(inspect.signature(method).parameters) == ["self", "prompts"]

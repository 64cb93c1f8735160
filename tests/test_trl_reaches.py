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


def test_the_checkpointing_deprecation_filter_matches_what_transformers_warns(tiny_causal_path):
    import warnings

    from transformers import AutoModelForCausalLM

    from lmcot.console import setup_logging

    model = AutoModelForCausalLM.from_pretrained(str(tiny_causal_path))
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        model.is_gradient_checkpointing  # what TRL and peft read
    with warnings.catch_warnings(record=True) as hidden:
        warnings.simplefilter("always")
        setup_logging(verbose=False)  # what every command does unless --verbose
        model.is_gradient_checkpointing
    assert not hidden, [str(w.message) for w in hidden]
    assert seen and all("gradient_checkpointing" in str(w.message) for w in seen), "transformers no longer warns: drop the filter"

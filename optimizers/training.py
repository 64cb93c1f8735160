"""What the three trainers (KD, TRL GRPO/RLOO, the seq2seq RL loop) share: one LoRA config builder,
one "last checkpoint" finder."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any


def lora_config(settings: Any, *, encoder_decoder: bool):
    """A peft ``LoraConfig`` from a config section with ``lora_r``, ``lora_alpha``, ``lora_dropout``
    and ``lora_target_modules`` (``kd`` or ``rl``)."""
    from peft import LoraConfig, TaskType

    return LoraConfig(r=settings.lora_r, lora_alpha=settings.lora_alpha, lora_dropout=settings.lora_dropout,
                      target_modules=settings.lora_target_modules,
                      task_type=TaskType.SEQ_2_SEQ_LM if encoder_decoder else TaskType.CAUSAL_LM)


def last_checkpoint(folder: str | Path) -> str | None:
    """The newest ``checkpoint-N`` under ``folder`` (``transformers.trainer_utils.get_last_checkpoint``)
    whose save finished. The Trainer writes ``trainer_state.json`` last, so a kill mid-save leaves a
    folder without it: such a folder cannot be resumed and is removed, then the next newest is used."""
    from transformers.trainer_utils import get_last_checkpoint

    if not Path(folder).is_dir():
        return None
    while (last := get_last_checkpoint(str(folder))) is not None:
        if (Path(last) / "trainer_state.json").is_file():
            return last
        shutil.rmtree(last, ignore_errors=True)
    return None

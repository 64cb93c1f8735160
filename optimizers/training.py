"""What the three trainers (KD, TRL GRPO/RLOO, the seq2seq RL loop) share: one LoRA config builder,
one "last checkpoint" finder, the RL algorithm for a student, the RL prompt rows, the check of
the trainer settings, and where TensorBoard logs go."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from lmcot.config import ConfigError


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


def rollout_generation_args(small_cfg: Any) -> dict[str, Any]:
    """GRPOConfig / RLOOConfig settings for small_lm's repetition controls. TRL has a field for
    ``repetition_penalty``; ``no_repeat_ngram_size`` goes through ``generation_kwargs`` (TRL's
    transformers generation path; a user's ``rl.trainer_args.generation_kwargs`` replaces it).
    Nothing is set at the defaults, so TRL's own defaults (and results) stay as they were."""
    args: dict[str, Any] = {}
    if small_cfg.repetition_penalty != 1.0:
        args["repetition_penalty"] = small_cfg.repetition_penalty
    if small_cfg.no_repeat_ngram_size:
        args["generation_kwargs"] = {"no_repeat_ngram_size": small_cfg.no_repeat_ngram_size}
    return args


def trainer_config(config_cls, args: dict[str, Any], extra: dict[str, Any], key: str):
    """``config_cls(**args)`` with the user's ``extra`` settings (``kd.trainer_args`` /
    ``rl.trainer_args``) merged over lmcot's own, so any TRL / transformers setting passes through
    without a config field of its own. A key the class does not take, a value of the wrong type or
    outside the documented choices, or a combination the class refuses is a ConfigError naming the key."""
    check_trainer_args(config_cls, extra, key)
    try:
        return config_cls(**{**args, **extra})
    except (ValueError, TypeError) as exc:
        raise _refused(config_cls, args, extra, key, exc) from None


def _refused(config_cls, args: dict[str, Any], extra: dict[str, Any], key: str, exc: Exception):
    """The ConfigError for a config the class refused, naming the setting that makes it refuse."""
    from lmcot.config import ConfigError

    def refuses(settings: dict[str, Any]) -> bool:
        try:
            config_cls(**settings)
        except (ValueError, TypeError):
            return True
        return False

    reason = " ".join(str(exc).split())[:300]
    culprits = [k for k in extra if refuses({**args, k: extra[k]})] if not refuses(args) else []
    names = culprits or list(extra)
    if not names:  # lmcot's own settings: an environment the trainer does not support
        return ConfigError(f"{key}: {config_cls.__name__} cannot be built here ({reason})")
    shown = ", ".join(f"{key}.{k}={_short(extra[k])}" for k in names)
    return ConfigError(f"{shown}: refused by {config_cls.__name__} ({reason})")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_trainer_args(config_cls, extra: dict[str, Any], key: str) -> None:
    import dataclasses
    import typing

    from pydantic import TypeAdapter, ValidationError

    from lmcot._hf_reaches import documented_choices
    from lmcot.config import ConfigError

    fields = {f.name: f for f in dataclasses.fields(config_cls) if f.init}
    unknown = sorted(set(extra) - set(fields))
    if unknown:
        raise ConfigError(f"{key}.{unknown[0]}: not a setting of {config_cls.__name__}")
    try:
        hints = typing.get_type_hints(config_cls)
    except Exception:  # noqa: BLE001 - an annotation that cannot be resolved here: no type checks
        hints = {}
    for name, value in extra.items():
        if name in hints:
            try:
                adapter = TypeAdapter(hints[name])
            except Exception:  # noqa: BLE001 - a type pydantic cannot check; the class's own checks remain
                adapter = None
            if adapter is not None:
                try:
                    adapter.validate_python(value)
                except ValidationError as err:
                    raise ConfigError(f"{key}.{name}={_short(value)}: {err.errors()[0]['msg']} (the type of "
                                      f"{config_cls.__name__}.{name})") from None
        choices = documented_choices(fields[name])
        if choices and isinstance(value, str) and value not in choices:
            raise ConfigError(f"{key}.{name}={_short(value)}: not one of {', '.join(choices)} "
                              f"({config_cls.__name__}.{name})")


CAUSAL_ALGORITHMS = ("grpo", "rloo")
SEQ2SEQ_ALGORITHMS = ("seq2seq_rloo", "seq2seq_ppo")


def choose_algorithm(requested: str, encoder_decoder: bool) -> str:
    """Resolve ``auto`` and reject an algorithm that does not fit the architecture."""
    if requested == "auto":
        return "seq2seq_rloo" if encoder_decoder else "grpo"
    if encoder_decoder and requested in CAUSAL_ALGORITHMS:
        raise ConfigError(f"rl.algorithm={requested} needs a causal student, but this one is encoder-decoder "
                         f"(TRL trains causal LMs only); use one of {SEQ2SEQ_ALGORITHMS} or auto")
    if not encoder_decoder and requested in SEQ2SEQ_ALGORITHMS:
        raise ConfigError(f"rl.algorithm={requested} is for encoder-decoder students, but this one is causal; "
                         f"use one of {CAUSAL_ALGORITHMS} or auto")
    if requested not in CAUSAL_ALGORITHMS + SEQ2SEQ_ALGORITHMS:
        raise ValueError(f"unknown rl.algorithm {requested!r}")
    return requested


def build_prompt_rows(trainset: list[dict[str, Any]], tokenizer: Any, is_encoder_decoder: bool,
                      rationale_form: str = "full") -> list[dict[str, Any]]:
    """Dataset rows: ``prompt`` (the rendered inference prompt of ``rationale_form``) plus question/context/answer."""
    from lmcot.programs.adapter import rationale_messages
    from lmcot.prompting import render_prompt

    return [{"prompt": render_prompt(tokenizer, rationale_messages(r["question"], r["context"], form=rationale_form),
                                     is_encoder_decoder),
             "question": r["question"], "context": r["context"], "answer": r["answer"]} for r in trainset]

def tensorboard_dir(stage_dir: str | Path) -> Path:
    """``OUT/logs/<stage>`` for a stage folder ``OUT/<stage>``: beside the stage, not in its checkpoints
    (removed when the stage finishes), so ``tensorboard --logdir OUT`` shows every stage's curves."""
    stage_dir = Path(stage_dir)
    return stage_dir.parent / "logs" / stage_dir.name


def keep_tensorboard_logs(trainer, stage_dir: str | Path) -> None:
    """Point a trainer's TensorBoard callback (``report_to: tensorboard``) at :func:`tensorboard_dir`,
    not at the checkpoints its default writes into (``lmcot._hf_reaches.log_tensorboard_to``)."""
    from lmcot._hf_reaches import log_tensorboard_to

    log_tensorboard_to(trainer, str(tensorboard_dir(stage_dir)))

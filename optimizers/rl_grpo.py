"""RL for causal students with TRL: GRPO (default) or RLOO, starting from the KD checkpoint.

    path = train_grpo(kd_checkpoint, rows, RewardSet(...), cfg.rl, cfg.small_lm, Path("runs/x/rl"))
    # -> runs/x/rl/model (merged, safetensors), runs/x/rl/train_log.json, runs/x/rl/checkpoints/

The paper trained FLAN-T5 with PPO; TRL 1.16 has no PPO trainer and its online trainers take causal
LMs only, so causal students use GRPO/RLOO (critic-free, group baseline) and encoder-decoder
students use the loop in ``rl_seq2seq``.

Prompts are the exact text the small LM sees at inference: ``render_prompt(tokenizer,
rationale_messages(question, context), False)``, given to TRL as plain strings (TRL applies no
chat template to a string prompt). TRL would tokenize them with the tokenizer's default special
tokens, which for some tokenizers (Llama) prepends a BOS that inference does not; the trainer
subclass below tokenizes them as ``TransformersEngine.generate`` does instead (same special-token
rule, same left truncation at ``small_lm.max_input_tokens``).

Batching: ``rl.batch_size`` counts completions per optimisation step (TRL's convention); it is
rounded up to a multiple of ``rl.num_generations``, so each step samples
``batch_size / num_generations`` prompts with ``num_generations`` rationales each. Other TRL
defaults are kept (GRPO: ``loss_type="dapo"``, advantages scaled by the group's std; one
generation batch per optimisation step, so updates are on-policy and ``epsilon = rl.clip_eps``
only bites if more iterations per batch are configured). KL: ``beta = rl.kl`` against the KD
checkpoint (with LoRA: the base with adapters disabled, which is the same model).

Checkpoints go to ``out_dir/checkpoints`` every ``rl.save_steps`` and at the last step; a rerun
resumes from the newest one (a larger ``max_steps`` continues training).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from lmcot.config import ConfigError, RLConfig, SmallLMConfig
from lmcot.optimizers.progress import quiet_trainer, rich_progress
from lmcot._hf_reaches import inference_prompt_trainer
from lmcot.optimizers.stage import Stage, save_model
from lmcot.optimizers.training import build_prompt_rows

log = logging.getLogger(__name__)


def completions_per_step(rl: RLConfig) -> int:
    """``rl.batch_size`` rounded up to a multiple of ``rl.num_generations`` (TRL needs whole groups)."""
    g = rl.num_generations
    return max(g, -(-rl.batch_size // g) * g)


def _training_dtype(small_cfg: SmallLMConfig) -> str:
    # Master weights stay in float32 unless the user pinned a dtype: Adam updates on bf16 weights
    # lose small steps. On GPU, bf16 autocast (TrainingArguments.bf16) keeps it fast.
    return "float32" if small_cfg.dtype == "auto" else small_cfg.dtype


def rl_trainer_config(algorithm: str, rl: RLConfig, small_cfg: SmallLMConfig, out_dir: Path, device: str):
    """The ``GRPOConfig`` / ``RLOOConfig`` RL runs with, ``rl.trainer_args`` merged over lmcot's
    settings. Built again by the compiler's pre-flight, before any paid call."""
    import torch

    from lmcot.optimizers.training import rollout_generation_args

    common: dict[str, Any] = dict(
        output_dir=str(out_dir / "checkpoints"),
        per_device_train_batch_size=completions_per_step(rl),
        gradient_accumulation_steps=1,
        num_generations=rl.num_generations,
        max_steps=rl.max_steps,
        learning_rate=rl.learning_rate,
        beta=rl.kl,
        epsilon=rl.clip_eps,
        temperature=rl.temperature,
        top_p=1.0,
        top_k=0,
        max_completion_length=rl.max_new_tokens,
        # Rollouts sample as inference does: small_lm's repetition controls (1.0 / 0 = off, TRL's default).
        **rollout_generation_args(small_cfg),
        seed=rl.seed,
        data_seed=rl.seed,
        logging_steps=rl.logging_steps,
        save_strategy="steps",
        save_steps=rl.save_steps,
        save_total_limit=2,
        report_to=list(rl.report_to) or "none",
        # Small models: recomputing activations costs more time than the memory it saves.
        activation_checkpointing=False,  # transformers 5's name (the old one warns on every run)
        use_cpu=device == "cpu",
        bf16=device.startswith("cuda") and torch.cuda.is_bf16_supported() and _training_dtype(small_cfg) == "float32",
        remove_unused_columns=False,
        disable_tqdm=True,  # lmcot's rich bar instead (see optimizers/progress.py)
    )
    from trl import GRPOConfig, RLOOConfig

    from lmcot.optimizers.training import trainer_config

    return trainer_config(GRPOConfig if algorithm == "grpo" else RLOOConfig, common, rl.trainer_args, "rl.trainer_args")


class GRPO(Stage):
    """TRL GRPO / RLOO as one :class:`~lmcot.optimizers.stage.Stage` (see the module docstring)."""

    def __init__(self, start_checkpoint: str, trainset: list[dict], rewards, rl: RLConfig, small_cfg: SmallLMConfig,
                 out_dir: Path, *, algorithm: str = "grpo", rationale_form: str = "full"):
        self.start, self.trainset, self.rewards, self.rl, self.small_cfg = start_checkpoint, trainset, rewards, rl, small_cfg
        self.out_dir, self.algorithm, self.rationale_form = Path(out_dir), algorithm, rationale_form

    def setup(self) -> None:
        from datasets import Dataset

        from lmcot.model_loading import load_model_and_tokenizer, pick_device
        from lmcot.optimizers.training import keep_tensorboard_logs, last_checkpoint, lora_config

        rl, small_cfg, algorithm = self.rl, self.small_cfg, self.algorithm
        self.out_dir.mkdir(parents=True, exist_ok=True)
        trainer_cls = inference_prompt_trainer(algorithm, small_cfg.max_input_tokens)  # validates `algorithm` first
        device = pick_device(small_cfg.device)
        model, self.tokenizer, is_seq2seq = load_model_and_tokenizer(
            self.start, device=device, dtype=_training_dtype(small_cfg),
            trust_remote_code=small_cfg.trust_remote_code, revision=small_cfg.revision)
        if is_seq2seq:
            raise ConfigError(f"{self.start} is an encoder-decoder model: TRL {algorithm.upper()} trains causal LMs "
                              "only; use rl.algorithm=seq2seq_rloo or seq2seq_ppo")
        self.tokenizer.padding_side = "left"
        per_step = completions_per_step(rl)
        if per_step != rl.batch_size:
            log.warning("rl.batch_size=%d rounded up to %d (a multiple of num_generations=%d)",
                        rl.batch_size, per_step, rl.num_generations)
        if len(self.trainset) < per_step // rl.num_generations:
            raise ConfigError(f"{len(self.trainset)} training questions, but each step needs "
                              f"{per_step // rl.num_generations} (batch_size {per_step} / num_generations "
                              f"{rl.num_generations})")

        dataset = Dataset.from_list(build_prompt_rows(self.trainset, self.tokenizer, is_encoder_decoder=False,
                                                      rationale_form=self.rationale_form))
        funcs, weights = self.rewards.trl_reward_functions()
        args = rl_trainer_config(algorithm, rl, small_cfg, self.out_dir, device)
        args.reward_weights = weights
        self.trainer = trainer_cls(model=model, reward_funcs=funcs, args=args, train_dataset=dataset,
                                   processing_class=self.tokenizer,
                                   peft_config=lora_config(rl, encoder_decoder=False) if rl.lora else None,
                                   callbacks=[rich_progress("RL", "reward", value=self.rewards.progress_value)])
        quiet_trainer(self.trainer)  # the rich bar shows the reward; every component goes to train_log.json and report_to
        keep_tensorboard_logs(self.trainer, self.out_dir)  # OUT/logs/rl, not inside the checkpoints removed at the end
        self.resume = last_checkpoint(args.output_dir)

    def train(self) -> None:
        if self.resume:
            log.info("resuming RL from %s", self.resume)
        try:
            self.trainer.train(resume_from_checkpoint=self.resume)
        finally:
            self.rewards.close()

    def save(self) -> Path:
        from lmcot import distributed
        from lmcot.jsonl import write_json

        model_dir = self.out_dir / "model"
        if distributed.is_main():  # several processes: one writes, the others wait for it below
            final = self.trainer.accelerator.unwrap_model(self.trainer.model)
            if self.rl.lora:
                final = final.merge_and_unload()
            write_json(self.out_dir / "train_log.json", self.trainer.state.log_history)
            save_model(final, self.tokenizer, model_dir)
        distributed.wait_for_everyone()
        return model_dir


def train_grpo(start_checkpoint: str, trainset: list[dict], rewards, rl: RLConfig, small_cfg: SmallLMConfig,
               out_dir: Path, *, algorithm: str = "grpo", rationale_form: str = "full") -> Path:
    """Train a causal student with TRL GRPO (``algorithm="grpo"``) or RLOO (``"rloo"``).

    ``trainset``: dicts with question, context, answer. ``rewards``: a ``RewardSet``.
    ``rationale_form``: the prompt the program runs the student with (``kd.rationale_form``).
    Returns ``out_dir/model`` (merged weights + tokenizer, safetensors), loadable with
    ``from_pretrained`` and usable as ``small_lm.model``.
    """
    return GRPO(start_checkpoint, trainset, rewards, rl, small_cfg, out_dir, algorithm=algorithm,
                rationale_form=rationale_form).run()

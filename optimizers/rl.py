"""The RL stage (the compiler's ``rl``): rewards, resume keys, and the algorithm for the student's architecture.

    model_dir = rl_stage(run, trainset, kd_model, OUT)   # the whole stage, as LMCoTCompiler runs it (last in this file)
    model_dir = run_rl(kd_checkpoint, trainset, RewardSet(...), cfg.rl, cfg.small_lm, Path("runs/x/rl"))   # training alone

The stage: its key (``OUT/rl/DONE.json``: the start weights, the rl and reward settings, the data) and
the checkpoints' key (the same without the step budget), the task's ``RewardSet`` -> :func:`run_rl`
-> the reward calls' usage beside the result, so a rerun skips a finished stage and resumes an
interrupted one.

``rl.algorithm``:

* ``auto``: ``grpo`` for causal students (TRL ``GRPOTrainer``), ``seq2seq_rloo`` for encoder-decoder
  students (the loop in ``rl_seq2seq``; TRL trains causal LMs only).
* ``grpo`` / ``rloo``: TRL trainers, causal students only.
* ``seq2seq_rloo`` / ``seq2seq_ppo``: encoder-decoder students only (``seq2seq_ppo`` is the paper's
  PPO-clip, with an RLOO baseline instead of a value head).

Asking for a causal algorithm on an encoder-decoder student (or the reverse) is an error, raised
before any model is loaded. ``rl.train_limit`` keeps the first N training questions.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from lmcot.config import REWARDS, RLConfig, SmallLMConfig
from lmcot.console import rule, say
from lmcot.keyed import Marker, key_of
from lmcot.optimizers.stage import StageFolder, keep_checkpoints_if, log_memory, release
from lmcot.optimizers.stage_markers import rollout_sampling, trained_settings
from lmcot.optimizers.training import SEQ2SEQ_ALGORITHMS, choose_algorithm

def _as_row(example: Any) -> dict[str, Any]:
    get = example.get if isinstance(example, dict) else (lambda k: getattr(example, k, None))
    row = {k: get(k) for k in ("question", "context", "answer")}
    row["context"] = row["context"] or ""  # a task without contexts: the context-free prompt
    missing = [k for k, v in row.items() if v is None]
    if missing:
        raise ValueError(f"RL training example lacks {missing}: each needs question and answer")
    return {k: str(v) for k, v in row.items()}


def run_rl(start_checkpoint: str, trainset: list, rewards, rl: RLConfig, small_cfg: SmallLMConfig,
           out_dir: Path, *, rationale_form: str = "full") -> Path:
    """Run the RL stage from ``start_checkpoint`` (the KD model folder) and return the trained
    model's folder, ``out_dir/model``. ``trainset``: ``dspy.Example`` objects or dicts with
    question, context and (gold) answer. ``rationale_form``: the prompt form the program runs the
    student with (``kd.rationale_form``). Rerunning with the same ``out_dir`` resumes."""
    from lmcot.model_loading import is_encoder_decoder

    seq2seq = is_encoder_decoder(start_checkpoint, trust_remote_code=small_cfg.trust_remote_code,
                                 revision=small_cfg.revision)
    algorithm = choose_algorithm(rl.algorithm, seq2seq)
    rows = [_as_row(x) for x in trainset]
    if rl.train_limit is not None:
        rows = rows[: rl.train_limit]
    if not rows:
        raise ValueError("run_rl: no training examples")
    out_dir = Path(out_dir)
    if algorithm in SEQ2SEQ_ALGORITHMS:
        from lmcot.optimizers.rl_seq2seq import train_seq2seq

        return train_seq2seq(start_checkpoint, rows, rewards, rl, small_cfg, out_dir, algorithm=algorithm,
                             rationale_form=rationale_form)
    from lmcot.optimizers.rl_grpo import train_grpo

    return train_grpo(start_checkpoint, rows, rewards, rl, small_cfg, out_dir, algorithm=algorithm,
                      rationale_form=rationale_form)


# -- the compiler's rl stage: rewards -> run_rl -> OUT/rl/DONE.json ------------------------------------------
def rl_stage(run: Any, trainset: list, start: str, out: Path) -> str:
    """Run the ``rl`` stage in ``out/rl`` from the ``start`` weights (this folder's KD model or the
    pretrained student) and return its model folder. ``run``: the compile's state (config, program,
    student settings, task, example ids, the scorer; ``compiler._Run``)."""
    from lmcot import distributed
    from lmcot.optimizers.rewards import RewardSet, reward_set_name, reward_weights_text

    cfg, stage = run.config, StageFolder(out / "rl")
    rl_dir, kd = stage.path, StageFolder(out / "kd")
    start_key = run.origin["student"]  # RL straight from the pretrained student ...
    if kd.marker.exists() and Path(start).resolve() == kd.model.resolve():
        start_key = kd.marker.key()  # ... or from this folder's KD model
    # Checkpoints stay resumable when only the step budget or logging changes; anything else that
    # shapes training (start weights, rewards, algorithm, data) makes old checkpoints stale.
    resume_key = key_of({"start": start_key, "rl": cfg.rl.model_dump(
        mode="json", exclude={"max_steps", "save_steps", "logging_steps", "report_to", "reward_concurrency"}),
        "metrics": cfg.rationale_metrics.model_dump(mode="json"), "answer_lm": run.program.large_lm.model,
        "rationale_form": cfg.kd.rationale_form,
        "small_lm": trained_settings(run.student), "train": run.origin["train"], **rollout_sampling(run.student)})
    key = key_of({"resume": resume_key, "max_steps": cfg.rl.max_steps})
    # Every process decides the same (the marker is read before anyone writes); the main one alone
    # moves stale checkpoints aside, and the others wait for it.
    done = stage.finished(key, remove_stale=distributed.is_main())
    distributed.wait_for_everyone()
    if done:
        return stage.skipped()
    if distributed.is_main():
        keep_checkpoints_if(stage.checkpoints, Marker(rl_dir / "resume_key.json"), resume_key,
                            "start weights or RL settings changed; old checkpoints removed")
    distributed.wait_for_everyone()
    processes = distributed.describe()
    # The task decides the answer reward (its answer type, or the user metric) and, without contexts,
    # which aspects can be rewarded at all.
    with_context = any(str(ex.get("context") or "").strip() for ex in trainset)
    weights = {name: float(getattr(cfg.rl.weights, name)) for name in REWARDS}
    # The reward set actually used: the ablation's quality-only and answer-only runs say so.
    reward_set = reward_set_name(weights)
    if run.task.metric is not None:
        reward_set = reward_set.replace("answer F1", f"metric {run.task.metric_name}")
    rule(f"[bold]stage rl[/]: {reward_set} ({processes})")
    say("rl:", "", f"reward weights {reward_weights_text(weights)} ({cfg.rl.aggregation})")
    # The untrained student's weights serve RL nothing (the large LM and the scorer's models do).
    release(run.program.small_lm)
    # Each process scores its own rollouts: TRL splits the prompts, so no reward call is made twice.
    rewards = RewardSet(cfg.rl, run.program.large_lm, run.scorer(), concurrency=cfg.rl.reward_concurrency,
                        task=run.task, examples=trainset, with_context=with_context)
    from lmcot.usage import UsageMeter

    # The reward calls (the large LM's answers, the judge's verdicts) are RL's paid part.
    reward_meter = UsageMeter([run.program.large_lm, run.judge_lm])
    log_memory("before RL training")
    started = time.monotonic()
    model_dir = run_rl(start, trainset, rewards, cfg.rl, run.student, rl_dir, rationale_form=cfg.kd.rationale_form)
    train_seconds = round(time.monotonic() - started, 3)
    from lmcot.memory import free_memory

    free_memory()  # the trainer's models and optimizer state are gone: return their pages to the OS
    log_memory("after RL training")
    if distributed.is_main():
        say("rl:", "", f"trained on {processes}")
        usage = reward_meter.report()
        stage.done(
            key, start=start, processes=processes, rewards=reward_set_name(weights), weights=weights,
            train_seconds=train_seconds, tokens_trained=stage.tokens_trained(),
            # With several processes each scores its own rollouts; this is the main process's share.
            reward_usage={k: usage[k] for k in ("calls", "cached_calls", "estimated_calls", "prompt_tokens",
                                                "completion_tokens", "cost", "paid_cost")},
            reward_usage_scope="main process only" if distributed.world_size() > 1 else "all")
        stage.draw_curves(out)
    distributed.wait_for_everyone()
    return str(model_dir)

"""The RL stage: pick the algorithm for the student's architecture and run it.

    model_dir = run_rl(kd_checkpoint, trainset, RewardSet(...), cfg.rl, cfg.small_lm, Path("runs/x/rl"))

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

from pathlib import Path
from typing import Any

from lmcot.config import RLConfig, SmallLMConfig
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

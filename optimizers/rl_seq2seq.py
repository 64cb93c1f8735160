"""RL for encoder-decoder students (FLAN-T5, as in the paper): a compact policy-gradient loop.

    path = train_seq2seq(kd_checkpoint, rows, RewardSet(...), cfg.rl, cfg.small_lm, Path("runs/x/rl"))

TRL 1.16 has no trainer for encoder-decoder models (its online trainers are causal-only and its PPO
trainer is gone), so this file holds a small loop. Each step:

1. take ``ceil(batch_size / num_generations)`` prompts (a seeded shuffle per epoch) rendered exactly
   as at inference, and sample ``num_generations`` rationales each at ``rl.temperature``;
2. reward them with ``RewardSet.components`` / ``total`` (the weighted, optionally normalised sum);
3. advantage, RLOO style: a rollout's reward minus the mean reward of the other rollouts of the
   same prompt (no critic);
4. ``seq2seq_rloo``: ``loss = -mean_seq(A * sum_t log p(y_t))``; ``seq2seq_ppo`` (the paper's
   algorithm, here with the RLOO baseline in place of a value head): the PPO-clip surrogate
   ``-min(r_t A, clip(r_t, 1 +- clip_eps) A)`` summed over tokens, ``r_t`` the ratio to the
   sampling policy, for ``rl.ppo_epochs`` passes over the batch (the first pass equals the RLOO
   gradient). Both add ``rl.kl * sum_t k3_t`` with ``k3 = exp(q - p) - (q - p) - 1``
   (``q`` the frozen KD checkpoint's log-prob of the sampled token, ``p`` the policy's): an
   unbiased, non-negative per-token KL estimate. Log-probs use logits / temperature, as sampled.
5. AdamW at ``rl.learning_rate`` (constant), gradient norm clipped to 1.0, dropout off.

The loop runs on ``accelerate.Accelerator`` (as TRL's trainers do): it places the model, does the
backward pass and gradient clipping, logs to the trackers named in ``rl.report_to`` (``none`` or an
empty list: none; ``tensorboard`` writes ``OUT/logs/rl``) and saves / restores the training state.
Logs per ``logging_steps`` (means over the window): ``rewards/<name>/mean``, ``reward``, ``kl``
(mean per-token k3), ``loss`` and for PPO ``clip_frac``, the keys TRL's GRPO uses (``train/<key>`` in
the trackers, as TRL writes them).
Every ``rl.save_steps`` and at the last step ``Accelerator.save_state`` writes a checkpoint (weights
as safetensors, optimizer, the python / numpy / torch / CUDA RNG states) plus lmcot's ``state.json``
(step, log) to ``out_dir/checkpoints/step-NNNNNN`` (the newest two are kept); a rerun resumes from
the newest with ``Accelerator.load_state``, so a crash loses at most ``save_steps`` steps and a
larger ``max_steps`` continues training. The final model (LoRA merged) goes to ``out_dir/model``
(safetensors, written aside and renamed into place as every stage's model), the log to
``out_dir/train_log.json``.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
from pathlib import Path

from lmcot.config import ConfigError, RLConfig, SmallLMConfig
from lmcot.optimizers.stage import Stage, replacing_folder, save_model
from lmcot.prompting import tokenize_prompts

log = logging.getLogger(__name__)

_MAX_GRAD_NORM = 1.0
_KEEP_CHECKPOINTS = 2


def _prompt_order(n: int, seed: int, epoch: int) -> list[int]:
    # A pure function of (seed, epoch): resuming needs only the step number to continue the order.
    order = list(range(n))
    random.Random(seed * 1_000_003 + epoch).shuffle(order)
    return order


def prompts_for_step(n: int, per_step: int, seed: int, step: int) -> list[int]:
    """Indices of the prompts used at ``step`` (0-based): consecutive slices of per-epoch shuffles."""
    out = []
    pos = step * per_step
    while len(out) < per_step:
        epoch, i = divmod(pos, n)
        out.append(_prompt_order(n, seed, epoch)[i])
        pos += 1
    return out


def rloo_advantages(rewards: list[float], group: int) -> list[float]:
    """Reward minus the mean of the other rollouts of the same prompt (consecutive groups)."""
    out = []
    for start in range(0, len(rewards), group):
        g = rewards[start:start + group]
        s = sum(g)
        out.extend(r - (s - r) / (len(g) - 1) for r in g)
    return out


def completion_mask(tokens, eos_id: int):
    """1 for each generated token up to and including the first EOS, 0 after (padding)."""
    import torch

    is_eos = (tokens == eos_id).int()
    seen_before = torch.cumsum(is_eos, dim=1) - is_eos  # EOS strictly before this position
    return (seen_before == 0).float()


def _token_logps(model, enc: dict, decoder_in, targets, temperature: float):
    import torch

    logits = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                   decoder_input_ids=decoder_in).logits.float() / temperature
    return torch.log_softmax(logits, dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)


class _Checkpoints:
    """``out_dir/checkpoints/step-NNNNNN``: a folder is complete once its ``state.json`` exists
    (written last, atomically), so a crash mid-save leaves the previous checkpoint in use."""

    def __init__(self, root: Path):
        self.root = root

    def latest(self) -> Path | None:
        done = sorted(p for p in self.root.glob("step-*") if (p / "state.json").is_file())
        return done[-1] if done else None

    def save(self, accelerator, step: int, history: list[dict]) -> Path:
        from lmcot.jsonl import write_json

        final = self.root / f"step-{step:06d}"
        with replacing_folder(final) as tmp:
            tmp.mkdir(parents=True)
            accelerator.save_state(str(tmp))  # model (safetensors), optimizer, RNG states
            write_json(tmp / "state.json", {"step": step, "log_history": history})
        for old in sorted(p for p in self.root.glob("step-*") if (p / "state.json").is_file())[:-_KEEP_CHECKPOINTS]:
            shutil.rmtree(old, ignore_errors=True)
        return final


def _load_policy(start_checkpoint: str, rl: RLConfig, small_cfg: SmallLMConfig, device: str):
    """The KD checkpoint (with fresh LoRA adapters when ``rl.lora``); a resumed run then overwrites
    its weights with ``Accelerator.load_state``."""
    from lmcot.model_loading import load_model_and_tokenizer

    dtype = "float32" if small_cfg.dtype == "auto" else small_cfg.dtype  # fp32 master weights by default
    model, tokenizer, is_seq2seq = load_model_and_tokenizer(
        start_checkpoint, device=device, dtype=dtype, trust_remote_code=small_cfg.trust_remote_code,
        revision=small_cfg.revision)
    if rl.lora and is_seq2seq:
        from peft import get_peft_model

        from lmcot.optimizers.training import lora_config

        model = get_peft_model(model, lora_config(rl, encoder_decoder=True))
    return model, tokenizer, is_seq2seq


def _reference(start_checkpoint: str, policy, rl: RLConfig, small_cfg: SmallLMConfig, device: str):
    """The frozen KD checkpoint for the KL term; None when kl == 0 or with LoRA (the base model
    with adapters disabled is the reference, no second copy needed)."""
    if rl.kl == 0 or rl.lora:
        return None
    from lmcot.model_loading import load_model_and_tokenizer

    ref, _, _ = load_model_and_tokenizer(start_checkpoint, device=device, dtype=str(policy.dtype).split(".")[-1],
                                         trust_remote_code=small_cfg.trust_remote_code, revision=small_cfg.revision)
    ref.requires_grad_(False)
    return ref


def _update(accelerator, model, ref, optimizer, params, enc, decoder_in, targets, mask, adv, rl: RLConfig,
            algorithm: str) -> dict[str, float]:
    """One batch of policy-gradient updates (1 for RLOO, ``rl.ppo_epochs`` for PPO); returns stats."""
    import torch

    with torch.no_grad():
        old_logps = None  # PPO's ratio is to the policy that sampled: these weights, before the update
        if algorithm == "seq2seq_ppo":
            old_logps = _token_logps(model, enc, decoder_in, targets, rl.temperature)
        if ref is not None:
            ref_logps = _token_logps(ref, enc, decoder_in, targets, rl.temperature)
        elif rl.kl > 0:  # LoRA: the base model with the adapter off is the KD checkpoint
            with accelerator.unwrap_model(model).disable_adapter():
                ref_logps = _token_logps(model, enc, decoder_in, targets, rl.temperature)
        else:
            ref_logps = None
    n_tokens = mask.sum().clamp(min=1)
    stats: dict[str, float] = {}
    for _ in range(rl.ppo_epochs if algorithm == "seq2seq_ppo" else 1):
        logps = _token_logps(model, enc, decoder_in, targets, rl.temperature)
        if old_logps is not None:
            ratio = torch.exp(logps - old_logps)
            a = adv.unsqueeze(1)
            surrogate = torch.min(ratio * a, torch.clamp(ratio, 1 - rl.clip_eps, 1 + rl.clip_eps) * a)
            loss = -(surrogate * mask).sum(1).mean()
            stats["clip_frac"] = float((((ratio.detach() - 1).abs() > rl.clip_eps).float() * mask).sum() / n_tokens)
        else:
            loss = -(adv * (logps * mask).sum(1)).mean()
        if ref_logps is not None:
            d = ref_logps - logps
            k3 = torch.exp(d) - d - 1
            loss = loss + rl.kl * (k3 * mask).sum(1).mean()
            stats["kl"] = float((k3.detach() * mask).sum() / n_tokens)
        optimizer.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        stats["grad_norm"] = float(accelerator.clip_grad_norm_(params, _MAX_GRAD_NORM))
        optimizer.step()
        stats["loss"] = float(loss.detach())
    return stats


def _accelerator(rl: RLConfig, device: str, out_dir: Path):
    """An ``Accelerator`` on ``device`` logging to ``rl.report_to`` (TensorBoard: ``OUT/logs/rl``, beside
    the KD stage's ``OUT/logs/kd``)."""
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration

    from lmcot.optimizers.training import tensorboard_dir

    trackers = [t for t in rl.report_to if t != "none"]
    # The tracker's run name (init_trackers) is the last part: OUT/logs + "rl".
    project = ProjectConfiguration(project_dir=str(out_dir), logging_dir=str(tensorboard_dir(out_dir).parent))
    try:
        return Accelerator(cpu=device == "cpu", log_with=trackers or None, project_config=project)
    except ValueError as e:  # an unknown tracker name
        raise ConfigError(f"rl.report_to: {e}") from e


class Seq2SeqRL(Stage):
    """The encoder-decoder RL loop as one :class:`~lmcot.optimizers.stage.Stage` (see the module docstring)."""

    def __init__(self, start_checkpoint: str, trainset: list[dict], rewards, rl: RLConfig, small_cfg: SmallLMConfig,
                 out_dir: Path, *, algorithm: str = "seq2seq_rloo", rationale_form: str = "full"):
        if algorithm not in ("seq2seq_rloo", "seq2seq_ppo"):
            raise ValueError(f"train_seq2seq: algorithm must be seq2seq_rloo or seq2seq_ppo, got {algorithm!r}")
        self.start, self.trainset, self.rewards, self.rl, self.small_cfg = start_checkpoint, trainset, rewards, rl, small_cfg
        self.out_dir, self.algorithm, self.rationale_form = Path(out_dir), algorithm, rationale_form

    def setup(self) -> None:
        import torch

        from lmcot.model_loading import pick_device
        from lmcot.optimizers.training import build_prompt_rows

        rl, small_cfg = self.rl, self.small_cfg
        self.ckpts = _Checkpoints(self.out_dir / "checkpoints")
        resume = self.ckpts.latest()
        self.accelerator = accelerator = _accelerator(rl, pick_device(small_cfg.device), self.out_dir)
        self.device = str(accelerator.device)  # "cpu", "cuda:0", "mps": what the model loaders take
        torch.manual_seed(rl.seed)
        model, self.tokenizer, is_seq2seq = _load_policy(self.start, rl, small_cfg, self.device)
        if not is_seq2seq:
            raise ConfigError(f"{self.start} is a causal LM: {self.algorithm} is for encoder-decoder students; "
                              "use rl.algorithm=grpo or rloo")
        self.ref = _reference(self.start, model, rl, small_cfg, self.device)
        model.eval()  # dropout off: the log-probs must be those of the policy that sampled
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.model, self.optimizer = accelerator.prepare(model, torch.optim.AdamW(self.params, lr=rl.learning_rate))
        self.rows = build_prompt_rows(self.trainset, self.tokenizer, is_encoder_decoder=True,
                                      rationale_form=self.rationale_form)
        if not self.rows:
            raise ValueError("train_seq2seq: empty trainset")

        self.step, self.history = 0, []
        if resume is not None:
            state = json.loads((resume / "state.json").read_text())
            self.step, self.history = int(state["step"]), list(state["log_history"])
            accelerator.load_state(str(resume))  # weights, optimizer and RNG states
            log.info("resuming seq2seq RL from %s (step %d)", resume, self.step)
        accelerator.init_trackers(self.out_dir.name)
        self.policy = accelerator.unwrap_model(self.model)  # generate() lives on the model, not on a wrapper

    def train(self) -> None:
        import torch
        from lmcot.console import progress_bar

        rl, small_cfg, tokenizer, rewards, accelerator = self.rl, self.small_cfg, self.tokenizer, self.rewards, self.accelerator
        device, rows, history, step = self.device, self.rows, self.history, self.step
        G = rl.num_generations
        prompts_per_step = -(-rl.batch_size // G)
        eos_id = tokenizer.eos_token_id
        window: list[dict[str, float]] = []
        bar = progress_bar(f"RL ({self.algorithm})", disable=not accelerator.is_local_main_process)
        bar.start()
        bar_task = bar.add_task("", total=rl.max_steps, completed=step)
        try:
            while step < rl.max_steps:
                batch = [rows[i] for i in prompts_for_step(len(rows), prompts_per_step, rl.seed, step)]
                enc = tokenize_prompts(tokenizer, [r["prompt"] for r in batch], is_encoder_decoder=True,
                                       max_length=small_cfg.max_input_tokens, padding=True, return_tensors="pt")
                enc = {k: enc[k].to(device).repeat_interleave(G, dim=0) for k in ("input_ids", "attention_mask")}
                with torch.no_grad():
                    # small_lm's repetition controls, as the engine samples at inference (1.0 / 0: off).
                    seqs = self.policy.generate(**enc, do_sample=True, temperature=rl.temperature, top_p=1.0, top_k=0,
                                                max_new_tokens=rl.max_new_tokens, pad_token_id=tokenizer.pad_token_id,
                                                repetition_penalty=small_cfg.repetition_penalty,
                                                no_repeat_ngram_size=small_cfg.no_repeat_ngram_size)
                decoder_in, targets = seqs[:, :-1], seqs[:, 1:]
                mask = completion_mask(targets, eos_id)
                texts = [t.strip() for t in tokenizer.batch_decode(targets, skip_special_tokens=True)]
                # generate() returns the G samples of a prompt as consecutive rows.
                reward_rows = [{"question": batch[i // G]["question"], "context": batch[i // G]["context"],
                                "answer": batch[i // G]["answer"], "rationale": t} for i, t in enumerate(texts)]
                comps = rewards.components(reward_rows)
                totals = rewards.total(comps)
                adv = torch.tensor(rloo_advantages(totals, G), device=device, dtype=torch.float32)
                stats = _update(accelerator, self.model, self.ref, self.optimizer, self.params, enc, decoder_in,
                                targets, mask, adv, rl, self.algorithm)
                step += 1
                window.append({**rewards.log_metrics(comps), **stats,
                               "completions/mean_length": float(mask.sum(1).mean())})
                shown = rewards.progress_value(window[-1])
                bar.update(bar_task, advance=1, **({"description": f"reward {shown:.3f}"} if shown is not None else {}))
                if step % max(1, rl.logging_steps) == 0 or step == rl.max_steps:
                    entry = {k: sum(w[k] for w in window) / len(window) for k in window[0]}
                    entry["step"] = step
                    history.append(entry)
                    accelerator.log({f"train/{k}": v for k, v in entry.items() if k != "step"}, step=step)
                    window = []
                if step % max(1, rl.save_steps) == 0 or step == rl.max_steps:
                    self.ckpts.save(accelerator, step, history)
        finally:
            self.step = step
            bar.stop()
            accelerator.end_training()

    def save(self) -> Path:
        from lmcot.jsonl import write_json

        model_dir = self.out_dir / "model"
        if self.accelerator.is_main_process:
            final = self.policy.merge_and_unload() if self.rl.lora else self.policy
            write_json(self.out_dir / "train_log.json", self.history)
            # Aside, then renamed into place, as KD and GRPO save: never a half-written `model` folder.
            save_model(final, self.tokenizer, model_dir)
        return model_dir


def train_seq2seq(start_checkpoint: str, trainset: list[dict], rewards, rl: RLConfig, small_cfg: SmallLMConfig,
                  out_dir: Path, *, algorithm: str = "seq2seq_rloo", rationale_form: str = "full") -> Path:
    """Train an encoder-decoder student with RLOO or PPO-clip (see the module docstring).

    ``trainset``: dicts with question, context, answer. ``rewards``: a ``RewardSet``. Returns
    ``out_dir/model`` (merged weights + tokenizer, safetensors).
    """
    return Seq2SeqRL(start_checkpoint, trainset, rewards, rl, small_cfg, out_dir, algorithm=algorithm,
                     rationale_form=rationale_form).run()

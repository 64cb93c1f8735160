"""Knowledge distillation (the compiler's ``kd`` stage): fine-tune the small LM on good rationales.

    model_dir = kd_stage(run, trainset, start, OUT)   # the whole stage, as LMCoTCompiler runs it (last in this file)
    model_dir = distill(kept, "Qwen/Qwen2.5-0.5B-Instruct", OUT / "kd", cfg.kd, cfg.small_lm)   # training alone
    # OUT/kd/model: a plain checkpoint (safetensors + tokenizer) for AutoModelFor*.from_pretrained

The stage: the teacher's rationales (``bootstrap.bootstrap_traces``, kept by the answer filter) and/or
the dataset's own (``kd.source``) -> :class:`Distill` -> ``OUT/kd/DONE.json``, keyed on every input
(``stage_markers``), so a rerun skips a finished stage and resumes an interrupted one.

``kept`` rows carry ``question``, ``context`` and ``rationale`` (``select_kept`` rows with the
context added, or ``dspy.Example``-like objects with those fields).

Train == inference. The prompt of every training example is built by
:func:`lmcot.programs.adapter.rationale_messages` + :func:`lmcot.prompting.render_prompt` and
tokenized exactly as :meth:`lmcot.hf_engine.TransformersEngine.generate` tokenizes it (special
tokens only when the model has no chat template, prompts cut from the left when too long). The
examples are tokenized here, not by TRL: TRL's text prompt-completion path tokenizes with its own
rules, and any difference (an extra BOS, a merge at the prompt/completion boundary) would train the
student on a prompt it never sees at inference.

* causal students: TRL ``SFTTrainer`` on a pre-tokenized dataset whose labels are -100 on the
  prompt, so the loss is on the rationale + EOS only;
* encoder-decoder students (T5): ``transformers.Seq2SeqTrainer`` + ``DataCollatorForSeq2Seq``.

Checkpoints go to ``out_dir/checkpoints`` and a rerun resumes from the last complete one (when the
data and settings are the same); a finished ``out_dir/model`` for the same inputs is reused as is.
With ``kd.lora`` a LoRA adapter is trained and merged into the weights before saving.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lmcot.config import KDConfig, SmallLMConfig
from lmcot.console import rule, say
from lmcot.data import DataError
from lmcot.errors import RunError
from lmcot.jsonl import write_json
from lmcot.keyed import Marker, key_of
from lmcot.optimizers.progress import quiet_trainer, rich_progress
from lmcot.optimizers.stage import Stage, StageFolder, keep_checkpoints_if, log_memory, release, save_model
from lmcot.optimizers.stage_markers import invalidate_traces_if_changed, sampling_settings, trained_settings
from lmcot.optimizers.training import keep_tensorboard_logs, last_checkpoint, lora_config, trainer_config
from lmcot.programs.adapter import rationale_messages
from lmcot.prompting import render_prompt, tokenize_prompts

log = logging.getLogger(__name__)

_MARKER = "lmcot_kd.json"  # what a finished model / a checkpoint folder was trained from


def _field(row: Any, name: str) -> str:
    value = row.get(name) if isinstance(row, dict) else getattr(row, name, None)
    if value is None:
        raise ValueError(f"a KD example has no {name!r} field (need question, context and rationale)")
    return str(value)


def prompt_text(tokenizer: Any, is_encoder_decoder: bool, question: str, context: str, form: str = "full") -> str:
    """The small LM's input text for one question, as the engine renders it at inference (``form``:
    ``kd.rationale_form``, which picks the Rationalize signature)."""
    return render_prompt(tokenizer, rationale_messages(question, context, form=form), is_encoder_decoder)


def prompt_ids(tokenizer: Any, is_encoder_decoder: bool, question: str, context: str,
               max_length: int | None = None, form: str = "full") -> list[int]:
    """Token ids of the prompt, tokenized as ``TransformersEngine.generate`` does: special tokens
    added only for seq2seq models or causal models without a chat template (whose template already
    writes them), over-long prompts cut from the left so the question survives."""
    text = prompt_text(tokenizer, is_encoder_decoder, question, context, form)
    return list(tokenize_prompts(tokenizer, [text], is_encoder_decoder=is_encoder_decoder,
                                 max_length=max_length)["input_ids"][0])


def _target_ids(tokenizer: Any, rationale: str) -> list[int]:
    """The rationale's ids followed by exactly one EOS (the student must learn to stop)."""
    ids = list(tokenizer(rationale.strip(), add_special_tokens=False)["input_ids"])
    return ids + [tokenizer.eos_token_id]


def build_example(tokenizer: Any, is_encoder_decoder: bool, row: Any, max_length: int,
                  max_prompt_tokens: int | None = None, form: str = "full") -> dict[str, list[int]]:
    """One tokenized training example.

    causal: ``input_ids`` = prompt + rationale + EOS, ``labels`` = -100 on the prompt;
    seq2seq: ``input_ids`` = the encoder prompt, ``labels`` = rationale + EOS.
    The prompt is cut from the left at ``max_prompt_tokens`` (the engine's ``max_input_tokens``, as at
    inference) and, for causal models, further if prompt + rationale exceed ``max_length``.
    """
    question, context, rationale = _field(row, "question"), _field(row, "context"), _field(row, "rationale")
    target = _target_ids(tokenizer, rationale)
    limit = max_length if max_prompt_tokens is None else min(max_length, max_prompt_tokens)
    if is_encoder_decoder:
        return {"input_ids": prompt_ids(tokenizer, True, question, context, limit, form),
                "labels": target[:max_length]}
    target = target[: max_length - 1]  # at least one prompt token stays
    prompt = prompt_ids(tokenizer, False, question, context, min(limit, max_length - len(target)), form)
    return {"input_ids": prompt + target, "labels": [-100] * len(prompt) + target}


def _warn_about_lengths(tokenizer: Any, is_encoder_decoder: bool, kept: list[Any], rows: list[dict[str, list[int]]],
                        small_cfg: SmallLMConfig, form: str = "full") -> None:
    """Say when training data differs from what inference will see: prompts cut harder than the
    engine cuts them (kd.max_length too small), or rationales longer than the student may write."""
    cut = too_long = 0
    for row, example in zip(kept, rows):
        full = len(prompt_ids(tokenizer, is_encoder_decoder, _field(row, "question"), _field(row, "context"),
                              small_cfg.max_input_tokens, form))
        used = len(example["input_ids"]) if is_encoder_decoder else example["labels"].count(-100)
        cut += used < full
        too_long += len(_target_ids(tokenizer, _field(row, "rationale"))) - 1 > small_cfg.max_tokens
    if cut:
        log.warning("KD: %d of %d training prompts were cut to fit kd.max_length; inference sees them whole. "
                    "Raise kd.max_length (or lower data.max_context_tokens).", cut, len(rows))
    if too_long:
        log.warning("KD: %d of %d training rationales (teacher or dataset) are longer than small_lm.max_tokens=%d, "
                    "so inference will cut what the student learns to write. Raise small_lm.max_tokens.", too_long, len(rows),
                    small_cfg.max_tokens)


# What a checkpoint depends on. The step budget is left out on purpose: raising max_steps and
# rerunning continues the same training from its last checkpoint.
_RESUME_KEYS = ("learning_rate", "batch_size", "gradient_accumulation_steps", "max_length", "lora", "lora_r",
                "lora_alpha", "lora_dropout", "lora_target_modules", "seed", "rationale_form")
_BUDGET_KEYS = ("max_steps", "num_train_epochs")


def _fingerprint(kept: list[Any], student: str, kd: KDConfig, small_cfg: SmallLMConfig, keys: tuple[str, ...]) -> str:
    """Hash of the data, the student and the ``keys`` settings: a checkpoint or a finished model
    trained from other inputs is never reused."""
    rows = [[_field(r, "question"), _field(r, "context"), _field(r, "rationale")] for r in kept]
    settings = {k: getattr(kd, k) for k in keys}
    payload = [rows, settings, {"student": student, "revision": small_cfg.revision}]
    return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()[:16]


def _common_args(kd: KDConfig, ckpt_dir: Path, small_cfg: SmallLMConfig) -> dict[str, Any]:
    import torch

    use_cpu = small_cfg.device == "cpu" or not torch.cuda.is_available()
    bf16 = not use_cpu and torch.cuda.is_bf16_supported()
    args: dict[str, Any] = dict(
        output_dir=str(ckpt_dir), learning_rate=kd.learning_rate,
        per_device_train_batch_size=kd.batch_size, gradient_accumulation_steps=kd.gradient_accumulation_steps,
        num_train_epochs=kd.num_train_epochs, max_steps=kd.max_steps if kd.max_steps is not None else -1,
        seed=kd.seed, data_seed=kd.seed, save_strategy="steps", save_steps=kd.save_steps,
        logging_steps=kd.logging_steps, report_to=kd.report_to, bf16=bf16, use_cpu=use_cpu,
        disable_tqdm=True, dataloader_num_workers=0, remove_unused_columns=False,
        # Checkpoints exist to resume a killed run: two are enough, old ones only fill the disk.
        save_total_limit=2,
    )
    return args


def kd_trainer_config(kd: KDConfig, small_cfg: SmallLMConfig, ckpt_dir: Path, is_seq2seq: bool):
    """The trainer config KD runs with (``SFTConfig`` for causal students, ``Seq2SeqTrainingArguments``
    for encoder-decoder ones), ``kd.trainer_args`` merged over lmcot's settings. Built again by the
    compiler's pre-flight, before any paid call."""
    args = _common_args(kd, ckpt_dir, small_cfg)
    if is_seq2seq:
        from transformers import Seq2SeqTrainingArguments

        return trainer_config(Seq2SeqTrainingArguments, args, kd.trainer_args, "kd.trainer_args")
    from trl import SFTConfig

    # activation_checkpointing=True is TRL's SFT default under transformers 5's name (TRL sets the
    # deprecated gradient_checkpointing, which warns on every run).
    return trainer_config(SFTConfig, {**args, "max_length": kd.max_length, "completion_only_loss": True,
                                      "packing": False, "dataset_num_proc": None, "shuffle_dataset": False,
                                      "activation_checkpointing": True},
                          kd.trainer_args, "kd.trainer_args")


def _train_causal(model, tokenizer, rows: list[dict], kd: KDConfig, config, callbacks: list):
    from datasets import Dataset
    from trl import SFTTrainer

    trainer = SFTTrainer(model=model, args=config, train_dataset=Dataset.from_list(rows),
                         processing_class=tokenizer, callbacks=callbacks,
                         peft_config=lora_config(kd, encoder_decoder=False) if kd.lora else None)
    return trainer


def _train_seq2seq(model, tokenizer, rows: list[dict], kd: KDConfig, config, callbacks: list):
    from datasets import Dataset
    from transformers import DataCollatorForSeq2Seq, Seq2SeqTrainer

    if kd.lora:
        from peft import get_peft_model

        model = get_peft_model(model, lora_config(kd, encoder_decoder=True))
    collator = DataCollatorForSeq2Seq(tokenizer, model=model, label_pad_token_id=-100, padding=True)
    return Seq2SeqTrainer(model=model, args=config, train_dataset=Dataset.from_list(rows),
                          data_collator=collator, processing_class=tokenizer, callbacks=callbacks)


@contextmanager
def _quiet_datasets():
    """Hide the `datasets` map/filter bars TRL draws while it prepares a few hundred rows."""
    from datasets.utils import logging as ds_logging

    was_enabled = ds_logging.is_progress_bar_enabled()
    ds_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            ds_logging.enable_progress_bar()


def _plain_model(model):
    """Merge a LoRA adapter into the base weights so the saved folder is an ordinary checkpoint."""
    if hasattr(model, "merge_and_unload"):
        return model.merge_and_unload()
    return model


class Distill(Stage):
    """KD as one :class:`~lmcot.optimizers.stage.Stage`: fine-tune ``student`` on ``kept`` rationales."""

    def __init__(self, kept: list[Any], student: str, out_dir: Path, kd: KDConfig, small_cfg: SmallLMConfig, *,
                 progress: bool = True):
        if not kept:
            raise DataError("no kept teacher rationales to distil from (every sample failed the keep filter?)")
        self.kept, self.student, self.kd, self.small_cfg, self.progress = kept, student, kd, small_cfg, progress
        self.out_dir = Path(out_dir)
        self.model_dir, self.ckpt_dir = self.out_dir / "model", self.out_dir / "checkpoints"
        self.run_fp = _fingerprint(kept, student, kd, small_cfg, _RESUME_KEYS)
        self.model_fp = _fingerprint(kept, student, kd, small_cfg, _RESUME_KEYS + _BUDGET_KEYS)

    def finished(self) -> Path | None:
        if (Marker(self.model_dir / _MARKER, "fingerprint").matches(self.model_fp)
                and (self.model_dir / "config.json").is_file()):
            log.info("KD: %s already holds the model trained from these rationales; reusing it", self.model_dir)
            return self.model_dir
        return None

    def setup(self) -> None:
        from transformers import set_seed

        from lmcot import distributed
        from lmcot.model_loading import load_model_and_tokenizer

        kd, small_cfg = self.kd, self.small_cfg
        if distributed.is_main():  # several processes train; the main one alone writes files
            # Checkpoints from other data or settings: resuming would mix two trainings.
            keep_checkpoints_if(self.ckpt_dir, Marker(self.ckpt_dir / _MARKER, "fingerprint"), self.run_fp)
        distributed.wait_for_everyone()

        set_seed(kd.seed)
        # Full-precision weights on CPU; the Trainer moves them to the accelerator and runs bf16
        # autocast there (pure bf16 weights would lose small AdamW updates).
        model, self.tokenizer, is_seq2seq = load_model_and_tokenizer(
            self.student, device="cpu", dtype="float32", trust_remote_code=small_cfg.trust_remote_code,
            revision=small_cfg.revision)
        model.train()
        self.rows = [build_example(self.tokenizer, is_seq2seq, r, kd.max_length, small_cfg.max_input_tokens,
                                   kd.rationale_form) for r in self.kept]
        _warn_about_lengths(self.tokenizer, is_seq2seq, self.kept, self.rows, small_cfg, kd.rationale_form)
        config = kd_trainer_config(kd, small_cfg, self.ckpt_dir, is_seq2seq)
        build = _train_seq2seq if is_seq2seq else _train_causal
        with _quiet_datasets():
            self.trainer = build(model, self.tokenizer, self.rows, kd, config,
                                 [rich_progress("KD", "loss", self.progress)])
        # The rich bar shows the loss; the full logs go to train_log.json (and report_to, TensorBoard's
        # to OUT/logs/kd where they outlive the checkpoints).
        quiet_trainer(self.trainer)
        keep_tensorboard_logs(self.trainer, self.out_dir)
        self.resume = last_checkpoint(self.ckpt_dir)

    def train(self) -> None:
        if self.resume:
            log.info("KD: resuming from %s", self.resume)
        self.trainer.train(resume_from_checkpoint=self.resume)

    def save(self) -> Path:
        from lmcot import distributed

        if distributed.is_main():
            final = _plain_model(self.trainer.model).to("cpu")
            final.eval()
            write_json(self.out_dir / "train_log.json", self.trainer.state.log_history)
            # The marker says what the folder was trained from: a rerun reuses it only for the same inputs.
            save_model(final, self.tokenizer, self.model_dir, {_MARKER: {
                "fingerprint": self.model_fp, "student": self.student, "examples": len(self.rows)}})
        distributed.wait_for_everyone()  # the other processes wait until the main one has saved the model
        return self.model_dir


def distill(kept: Iterable[Any], student: str, out_dir: Path, kd: KDConfig, small_cfg: SmallLMConfig, *,
            progress: bool = True) -> Path:
    """Fine-tune ``student`` (hub id or local folder) on ``kept`` rationales.

    Returns ``out_dir/model``. Also writes ``out_dir/train_log.json`` (the Trainer's log history)
    and keeps resumable checkpoints in ``out_dir/checkpoints``.
    """
    return Distill(list(kept), student, out_dir, kd, small_cfg, progress=progress).run()


# -- the compiler's kd stage: rationales (teacher or dataset) -> distill -> OUT/kd/DONE.json ---------------
def kd_stage(run: Any, trainset: list, student: str, out: Path, *, progress: bool = True) -> str:
    """Run the ``kd`` stage in ``out/kd`` and return its model folder. ``run``: the compile's state (config,
    program, student settings, task, example ids; ``compiler._Run``); ``student``: the start weights.

    The stage's key (``DONE.json``) holds every input: the teacher and its sampling, the kd and training
    settings, the data and the metric that keeps rationales. A finished stage with the same key is
    skipped; otherwise the teacher's traces resume from ``traces.jsonl`` and training from its checkpoints.
    """
    from lmcot import distributed
    from lmcot.lms import build_lm
    from lmcot.optimizers.dataset_rationales import dataset_rationales, digest

    cfg, stage = run.config, StageFolder(out / "kd")
    kd_dir = stage.path
    source = cfg.kd.source
    teacher = (build_lm(cfg.kd.teacher, role="kd.teacher", source=run.sources.get("kd.teacher")) if cfg.kd.teacher
               else run.program.large_lm)
    # What the teacher traces depend on (not api_base: a local server's port changes between runs).
    traces_key = key_of({"teacher": teacher.model, "teacher_kwargs": sampling_settings(teacher), "kd_temperature":
                       cfg.kd.temperature})
    own = dataset_rationales(trainset) if source in ("dataset", "both") else []
    key = key_of({"traces": traces_key if source != "dataset" else None, "kd": cfg.kd.model_dump(mode="json"),
                  "small_lm": trained_settings(run.student), **run.origin,
                  **({"dataset_rationales": digest(own)} if own else {}),
                  **({"metric": run.task.metric_name} if cfg.kd.keep_metric == "metric" else {})})
    done = stage.finished(key, remove_stale=distributed.is_main())
    distributed.wait_for_everyone()  # every process has read the marker before it can change
    if done:
        return stage.skipped()
    # The teacher bootstrap runs on the main process only; the others get its kept rationales.
    outcome, summary = None, None
    if distributed.is_main():
        if source == "dataset":  # the task's own rationales: no teacher call at all
            rule(f"[bold]stage kd[/]: {len(own)} rationales from the dataset (kd.source: dataset)")
            summary = {"source": "dataset", "questions": len(trainset), "kept_examples": len(own),
                       "dataset_rationales": len(own), "teacher_calls": 0}
            outcome = (own, None)
        else:
            invalidate_traces_if_changed(kd_dir, traces_key)
            rule("[bold]stage kd[/]: teacher rationales")
            kept_teacher, failure, summary = _teacher_rationales(trainset, teacher, kd_dir, cfg.kd, run.task,
                                                                 progress)
            if own and not failure:
                say("kd:", "green", f"{len(kept_teacher)} teacher rationales + {len(own)} from the dataset "
                     "(kd.source: both)")
                summary = {**summary, "source": "both", "dataset_rationales": len(own),
                           "kept_examples": len(kept_teacher) + len(own)}
            outcome = (kept_teacher + own if not failure else [], failure)
    kept, failure = distributed.broadcast(outcome)
    if failure:
        raise RunError(failure)
    processes = distributed.describe()
    # Training loads its own copy of the student: no in-process LM or scoring model serves KD, so
    # none stays resident beside the trainer's weights, gradients and optimizer state (each loads
    # again when the next evaluation needs it).
    release(run.program.small_lm, run.program.large_lm, teacher)
    run.release_scorer_models()
    log_memory("before KD training")
    rule(f"[bold]stage kd[/]: distil {len(kept)} rationales into the small LM ({processes})")
    started = time.monotonic()
    model_dir = distill(kept, student, kd_dir, cfg.kd, run.student, progress=progress)
    train_seconds = round(time.monotonic() - started, 3)
    log_memory("after KD training")
    if distributed.is_main():
        say("kd:", "", f"trained on {processes}")
        # The one-off cost of the stage beside its result: the teacher's calls (in summary), the
        # training's wall time and the tokens it trained on (the experiment's report reads them).
        # A changed setting later retrains from the start weights.
        stage.done(key, kept=len(kept), processes=processes, summary=summary,
                   train_seconds=train_seconds, tokens_trained=stage.tokens_trained())
        stage.draw_curves(out)
    distributed.wait_for_everyone()
    return str(model_dir)


def _teacher_rationales(trainset: list, teacher, kd_dir: Path, kd: KDConfig, task: Any,
                        progress: bool) -> tuple[list, str | None, dict[str, Any]]:
    """Teacher rationales: (kept rows, None, summary) or ([], why KD cannot go on, summary)."""
    from lmcot.optimizers.bootstrap import bootstrap_traces

    result = bootstrap_traces(trainset, teacher, kd, kd_dir, progress=progress, task=task)
    summary = result.summary
    recorded = sum(1 for t in result.traces if t.get("ok"))
    if not result.kept and result.transient and not recorded:
        # Nothing to distil because the teacher could not be reached (or wrote nothing parsable),
        # not because it was wrong.
        unparsable = all(e.startswith("unparsable") for e in result.transient)
        why = ("no reply followed the answer format" if unparsable else "is the teacher reachable?")
        return [], (f"kd: {len(result.transient)} teacher call(s) failed and no rationale was recorded "
                    f"({why}); rerun to retry them. First error: {result.transient[0]}"), summary
    if not result.kept and result.transient:
        # The teacher answers, but none of its parsed answers passed and the rest did not parse
        # (a small in-process teacher that does not follow the answer format).
        return [], (f"kd: none of the {recorded} recorded teacher rationales passed the filter "
                    f"({kd.keep_metric} >= {kd.min_score}) and {len(result.transient)} teacher "
                    f"call(s) failed (rerun to retry them); see {kd_dir}/traces.jsonl. First error: "
                    f"{result.transient[0]}"), summary
    if not result.kept:
        return [], (f"kd: no teacher rationale passed the filter ({kd.keep_metric} >= "
                    f"{kd.min_score}); see {kd_dir}/traces.jsonl"), summary
    from lmcot.optimizers.bootstrap import distillation_rows

    rows, counts = distillation_rows(result.kept, kd.rationale_form)
    summary["rationale_form"] = {"form": kd.rationale_form, **counts}
    if kd.rationale_form == "evidence":
        say("kd:", "green", f"evidence form: answer statements removed from {counts['stated']} of "
             f"{len(result.kept)} kept rationales ({counts['dropped']} left empty and dropped)")
        if not rows:
            return [], (f"kd: kd.rationale_form=evidence left no rationale to distil (every kept rationale was "
                        f"only an answer statement); see {kd_dir}/traces.jsonl"), summary
    return rows, None, summary

"""The LM-guided CoT compiler: teacher bootstrap -> distillation (``kd``) -> RL (``rl``).

    compiler = LMCoTCompiler(config, out_dir="runs/hotpot")
    compiled = compiler.compile(LMGuidedCoT(small_lm, large_lm), trainset, valset)
    compiled = compiler.compile(program, trainset=[dspy.Example(question=..., answer=...).with_inputs("question")],
                                valset=..., metric=my_metric)     # any task; no data section needed

or from the shell: ``lmcot compile --config configs/quickstart.yaml --out runs/quickstart``.

Like a DSPy optimizer, ``compile`` returns a *new* program and leaves its input untouched, and takes any
list of ``dspy.Example`` (question and answer; id, context and rationale optional) and an optional DSPy
metric ``metric(example, prediction, trace=None)``. Answers are scored by the task's ``TaskMetric``
(``data.answer_type``, ``data.labels`` and the metric), in every evaluation, KD's keep filter and RL's
answer reward. Only the small LM is trained; the large LM's answer step is frozen and never becomes training data. Each
stage writes its outputs under ``OUT/<stage>/`` and a ``DONE.json`` last, so a rerun skips finished
stages and resumes an interrupted one (traces file, DSPy disk cache, trainer checkpoints).

    OUT/program.json   OUT/small_lm/   OUT/kd/   OUT/rl/   OUT/metrics.json
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import dspy

from lmcot.config import ASPECTS, REWARDS, ConfigError, LMCoTConfig
from lmcot.errors import RunError
from lmcot.jsonl import write_json
from lmcot.keyed import key_of
from lmcot.optimizers.dev_report import answer_leak_share, cut_at_max_tokens
from lmcot.console import rule, say
from lmcot.optimizers.stage import StageFolder, keep_checkpoints_if, log_memory, release, replacing_folder
from lmcot.optimizers.stage_markers import (invalidate_traces_if_changed, rollout_sampling, sampling_settings,
                                            trained_settings)
from lmcot.keyed import Marker

log = logging.getLogger(__name__)


class LMCoTCompiler:
    def __init__(self, config: LMCoTConfig, out_dir: str | Path = "runs/lmcot", *, progress: bool = True):
        self.config = config
        self.out = Path(out_dir)
        self.progress = progress

    # -- the stages ------------------------------------------------------------------------
    def compile(self, program, trainset: list[dspy.Example], valset: list[dspy.Example] | None = None, *,
                metric=None):
        """A new program whose small LM is trained (see the module docstring). ``metric``: a DSPy metric
        function (or ``"module:function"``), in place of the config's ``metric``."""
        return self.compile_with_report(program, trainset, valset, metric=metric)[0]

    def compile_with_report(self, program, trainset: list[dspy.Example], valset: list[dspy.Example] | None = None,
                            *, metric=None) -> tuple[Any, dict[str, Any]]:
        """``compile``, and the dev report it also writes to ``OUT/metrics.json``."""
        from lmcot import distributed
        from lmcot.custom_data import prepare_examples
        from lmcot.metrics.task_metric import TaskMetric

        cfg = self.config
        task = TaskMetric.from_config(cfg, metric)  # imports the metric: a bad path fails here, before any call
        if getattr(program, "rationale_form", cfg.kd.rationale_form) != cfg.kd.rationale_form:
            # kd.rationale_form decides the form the student is trained and run in (a copy; the input stays).
            program = program.with_rationale_form(cfg.kd.rationale_form)
        run = _Run(cfg, program, [], task)  # the student's settings first; the examples' ids once prepared
        if distributed.world_size() > 1 and "rl" in cfg.stages:
            from lmcot.model_loading import is_encoder_decoder

            # TRL's GRPO/RLOO trainers run data-parallel; lmcot's own seq2seq loop has not been made to.
            if is_encoder_decoder(run.student.model, trust_remote_code=run.student.trust_remote_code,
                                  revision=run.student.revision):
                raise ConfigError(f"stages={cfg.stages}: an encoder-decoder student's RL loop runs as one process; "
                                 "run rl as one process (--stages rl resumes from a multi-process KD)")
        # Any dspy.Example list: ids derived where missing, an empty context, golds the answer type can score.
        trainset = prepare_examples(list(trainset or []), task.answer_type, task.labels, what="trainset")
        valset = prepare_examples(list(valset), task.answer_type, task.labels, what="valset") if valset else valset
        run.origin["train"] = sorted(str(ex.id) for ex in trainset)
        if not trainset:
            raise ConfigError("compile needs a non-empty trainset (data.train)")
        _check_task(cfg, task, trainset)
        from lmcot.preflight import check_out_dir

        check_out_dir(self.out)  # before the first paid call
        from lmcot.optimizers.preflight import preflight_training

        preflight_training(cfg, run.student, self.out)
        from lmcot.run_lock import output_lock

        from lmcot.lms import cache_in

        # A second run on this folder fails at once; DSPy's global cache is as it was after the compile.
        with output_lock(self.out, "LMCoTCompiler.compile"), cache_in(self.config.cache_dir):
            return self._compile(run, program, trainset, valset)

    def _compile(self, run: _Run, program, trainset: list[dspy.Example], valset: list[dspy.Example] | None,
                 ) -> tuple[Any, dict[str, Any]]:
        from lmcot import distributed
        from lmcot.lms import build_lm

        cfg = self.config
        main = distributed.is_main()  # several processes: only the main one calls LMs and writes files
        if main:
            self.out.mkdir(parents=True, exist_ok=True)
        checkpoint = run.student.model
        report: dict[str, Any] = {"stages": list(cfg.stages)}

        if valset and main:
            report["untrained"] = self._evaluate(run, program, valset, "untrained", aspects="rl" in cfg.stages)
        if "kd" in cfg.stages:
            checkpoint = self._stage_kd(run, trainset, checkpoint)
        elif StageFolder(self.out / "kd").marker.exists():
            # `--stages rl` after an earlier `--stages kd`: RL starts from that KD checkpoint.
            checkpoint = str(self.out / "kd" / "model")
            say("rl", "green", f"starts from the KD checkpoint of an earlier run: {checkpoint}")
        if "rl" in cfg.stages:
            if valset and main:
                before_rl = self._with_small(run, checkpoint, "before-rl")
                report["before_rl"] = self._evaluate(run, before_rl, valset, "before RL", aspects=True)
                release(before_rl.small_lm)  # RL trains its own copy of these weights
                del before_rl
            checkpoint = self._stage_rl(run, trainset, checkpoint)
        if not main:
            return None, report  # the main process writes the program folder and evaluates it

        final = self.out / "small_lm"
        if Path(checkpoint).resolve() != final.resolve():
            trained, wanted = _checkpoint_dtype(checkpoint, run.student), save_dtype(cfg.small_lm.save_dtype, run.student)
            with replacing_folder(final) as tmp:  # the one atomic model-folder write (optimizers/stage.py)
                if wanted == trained:
                    # Hard links: OUT/small_lm and the stage's model folder share one copy of the weights on disk.
                    shutil.copytree(checkpoint, tmp, copy_function=_link_or_copy)
                else:
                    from lmcot.model_loading import save_checkpoint_as

                    save_checkpoint_as(checkpoint, tmp, wanted)
            if wanted != trained:
                say("program:", "green", f"small_lm/ saved in {wanted} (trained in {trained}; small_lm.save_dtype="
                     f"{cfg.small_lm.save_dtype})")
        label = f"{self.out.name}-{cfg.stages[-1] if cfg.stages else 'base'}"
        compiled = program.deepcopy()
        compiled.rationalize.lm = build_lm(run.student.model_copy(update={"model": str(final)}), name=label)

        from lmcot.programs.program_io import save_program

        # relative to the program folder: the folder moves as a whole
        saved_cfg = cfg.model_copy(update={"small_lm": run.student.model_copy(
            update={"model": "small_lm", "save_dtype": cfg.small_lm.save_dtype})}, deep=True)
        save_program(compiled, self.out, saved_cfg, small_lm_label=label, metric_name=run.task.metric_name)
        if valset:
            report["compiled"] = self._evaluate(run, compiled, valset, "compiled", aspects="rl" in cfg.stages)
            if "rl" in cfg.stages:
                report["after_rl"] = report["compiled"]  # the name for it; same numbers
        write_json(self.out / "metrics.json", report)
        return compiled, report

    def _stage_kd(self, run: _Run, trainset: list[dspy.Example], student: str) -> str:
        from lmcot import distributed
        from lmcot.lms import build_lm
        from lmcot.optimizers.distill import distill

        from lmcot.optimizers.dataset_rationales import dataset_rationales, digest

        cfg, stage = self.config, StageFolder(self.out / "kd")
        kd_dir = stage.path
        source = cfg.kd.source
        teacher = build_lm(cfg.kd.teacher, role="kd.teacher") if cfg.kd.teacher else run.program.large_lm
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
        outcome = None
        if distributed.is_main():
            if source == "dataset":  # the task's own rationales: no teacher call at all
                rule(f"[bold]stage kd[/]: {len(own)} rationales from the dataset (kd.source: dataset)")
                self._kd_summary = {"source": "dataset", "questions": len(trainset), "kept_examples": len(own),
                                    "dataset_rationales": len(own), "teacher_calls": 0}
                outcome = (own, None)
            else:
                invalidate_traces_if_changed(kd_dir, traces_key)
                rule("[bold]stage kd[/]: teacher rationales")
                kept_teacher, failure = self._bootstrap(trainset, teacher, kd_dir, run.task)
                if own and not failure:
                    say("kd:", "green", f"{len(kept_teacher)} teacher rationales + {len(own)} from the dataset "
                         "(kd.source: both)")
                    self._kd_summary = {**self._kd_summary, "source": "both", "dataset_rationales": len(own),
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
        model_dir = distill(kept, student, kd_dir, cfg.kd, run.student, progress=self.progress)
        train_seconds = round(time.monotonic() - started, 3)
        log_memory("after KD training")
        if distributed.is_main():
            say("kd:", "", f"trained on {processes}")
            # The one-off cost of the stage beside its result: the teacher's calls (in summary), the
            # training's wall time and the tokens it trained on (the experiment's report reads them).
            # A changed setting later retrains from the start weights.
            stage.done(key, kept=len(kept), processes=processes, summary=self._kd_summary,
                       train_seconds=train_seconds, tokens_trained=_tokens_trained(stage))
            _draw_curves(self.out, stage)
        distributed.wait_for_everyone()
        return str(model_dir)

    def _bootstrap(self, trainset: list[dspy.Example], teacher, kd_dir: Path, task=None) -> tuple[list, str | None]:
        """Teacher rationales: (kept rows, None) or ([], why KD cannot go on)."""
        from lmcot.optimizers.bootstrap import bootstrap_traces

        cfg = self.config
        result = bootstrap_traces(trainset, teacher, cfg.kd, kd_dir, progress=self.progress, task=task)
        self._kd_summary = result.summary
        recorded = sum(1 for t in result.traces if t.get("ok"))
        if not result.kept and result.transient and not recorded:
            # Nothing to distil because the teacher could not be reached (or wrote nothing parsable),
            # not because it was wrong.
            unparsable = all(e.startswith("unparsable") for e in result.transient)
            why = ("no reply followed the answer format" if unparsable else "is the teacher reachable?")
            return [], (f"kd: {len(result.transient)} teacher call(s) failed and no rationale was recorded "
                        f"({why}); rerun to retry them. First error: {result.transient[0]}")
        if not result.kept and result.transient:
            # The teacher answers, but none of its parsed answers passed and the rest did not parse
            # (a small in-process teacher that does not follow the answer format).
            return [], (f"kd: none of the {recorded} recorded teacher rationales passed the filter "
                        f"({cfg.kd.keep_metric} >= {cfg.kd.min_score}) and {len(result.transient)} teacher "
                        f"call(s) failed (rerun to retry them); see {kd_dir}/traces.jsonl. First error: "
                        f"{result.transient[0]}")
        if not result.kept:
            return [], (f"kd: no teacher rationale passed the filter ({cfg.kd.keep_metric} >= "
                        f"{cfg.kd.min_score}); see {kd_dir}/traces.jsonl")
        from lmcot.optimizers.bootstrap import distillation_rows

        rows, counts = distillation_rows(result.kept, cfg.kd.rationale_form)
        self._kd_summary["rationale_form"] = {"form": cfg.kd.rationale_form, **counts}
        if cfg.kd.rationale_form == "evidence":
            say("kd:", "green", f"evidence form: answer statements removed from {counts['stated']} of "
                 f"{len(result.kept)} kept rationales ({counts['dropped']} left empty and dropped)")
            if not rows:
                return [], (f"kd: kd.rationale_form=evidence left no rationale to distil (every kept rationale was "
                            f"only an answer statement); see {kd_dir}/traces.jsonl")
        return rows, None

    def _stage_rl(self, run: _Run, trainset: list[dspy.Example], start: str) -> str:
        from lmcot import distributed
        from lmcot.optimizers.rewards import RewardSet
        from lmcot.optimizers.rl import run_rl

        cfg, stage = self.config, StageFolder(self.out / "rl")
        rl_dir, kd = stage.path, StageFolder(self.out / "kd")
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
        from lmcot.optimizers.rewards import reward_set_name, reward_weights_text

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
        reward_meter = UsageMeter([run.program.large_lm, run._judge_lm])
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
                train_seconds=train_seconds, tokens_trained=_tokens_trained(stage),
                # With several processes each scores its own rollouts; this is the main process's share.
                reward_usage={k: usage[k] for k in ("calls", "cached_calls", "estimated_calls", "prompt_tokens",
                                                    "completion_tokens", "cost", "paid_cost")},
                reward_usage_scope="main process only" if distributed.world_size() > 1 else "all")
            _draw_curves(self.out, stage)
        distributed.wait_for_everyone()
        return str(model_dir)

    # -- helpers -----------------------------------------------------------------------------
    def _with_small(self, run: _Run, checkpoint: str, label: str):
        from lmcot.lms import build_lm

        copy = run.program.deepcopy()
        copy.rationalize.lm = build_lm(run.student.model_copy(update={"model": checkpoint}),
                                       name=f"{self.out.name}-{label}")
        return copy

    def _evaluate(self, run: _Run, program, valset: list[dspy.Example], label: str,
                  aspects: bool = False) -> dict[str, Any]:
        """Dev EM/F1 (and, with ``aspects``, the mean of each rationale-quality aspect)."""
        from lmcot.programs.evaluation import evaluate_program

        from lmcot.hf_engine import hf_engine_of

        rows, summary = evaluate_program(program, valset, concurrency=self.config.eval.concurrency, label=label,
                                         progress=self.progress, what=f"{label} dev evaluation", task=run.task)
        if summary["errors"]:
            first = next(r["error"] for r in rows if r["error"])
            say(f"{label}:", "yellow", f"{summary['errors']} of {len(rows)} dev examples failed (scored 0); "
                  f"first error: {first}")
        from lmcot.metrics.rationale.evidence import evidence_share

        cut = cut_at_max_tokens(rows, hf_engine_of(program.small_lm), self.config.small_lm.max_tokens)
        result: dict[str, Any] = {**{k: summary[k] for k in ("em", "f1", "n", "errors")},
                                  **{k: summary[k] for k in ("metric", "metric_name", "off_label") if k in summary},
                                  **evidence_share(rows, valset), "rationales_cut": cut,
                                  **answer_leak_share(rows, same=run.task.same_answer)}
        if cut:
            say(f"{label}:", "yellow", f"{cut} of {len(rows)} rationales stopped at small_lm.max_tokens="
                  f"{self.config.small_lm.max_tokens} (not at EOS)")
        # Each point's rationales, for reading what training changed (the quickstart prints a few).
        from lmcot.jsonl import atomic_write_text

        atomic_write_text(self.out / "dev" / f"{label.replace(' ', '_')}.jsonl",
                          "".join(json.dumps(r, default=str) + "\n" for r in rows))
        if aspects:
            from lmcot.metrics.rationale import summarize

            from lmcot.metrics.rationale import rationale_row

            by_id = {ex.id: ex for ex in valset}
            items = [rationale_row(by_id[r["id"]], r.get("rationale")) for r in rows]
            result["aspects"] = summarize(run.scorer().score(items, list(ASPECTS)))
        return result


class _Run:
    """The state of one ``compile()`` call, so a second call on the same compiler starts afresh."""

    def __init__(self, config: LMCoTConfig, program, trainset: list[dspy.Example], task=None):
        from lmcot.hf_engine import hf_engine_of
        from lmcot.lms import small_lm_config

        engine = hf_engine_of(program.small_lm)
        if engine is None:
            raise ConfigError("small_lm must be an in-process transformers model (small_lm.backend: transformers) "
                              "to be trained")
        self.config, self.program, self.task = config, program, task
        # The student's weights *and* settings come from the program's small LM (one source).
        self.student = small_lm_config(program.small_lm)
        self.origin = {"student": engine.fingerprint, "train": sorted(str(ex.id) for ex in trainset)}
        self._scorer = None
        self._judge_lm = None

    def release_scorer_models(self) -> None:
        """Drop the scorer's loaded models (reference LM, embedder, an in-process judge) until next use."""
        if self._scorer is not None:
            self._scorer.release()
        release(self._judge_lm)

    def scorer(self):
        """One scorer for this compile (it holds the reference LM and the judge), built on first use."""
        if self._scorer is None:
            from lmcot.metrics.rationale import LEXICAL, reference_lm_for, scorer_from_config

            rm = self.config.rationale_metrics
            # The judge: rationale_metrics.judge, else this program's own large LM (not the config's).
            judged = any(b == "judge" for b in rm.backends.values())
            self._scorer = scorer_from_config(self.config, judge_lm=None if rm.judge or not judged else self.program.large_lm,
                                              # Perplexity needs a fixed reader of English: the student before any
                                              # training (scoring with the policy would reward it for agreeing with
                                              # itself) when causal; else the lexical proxy, unless reference_lm names one.
                                              reference_lm=reference_lm_for(self.config.model_copy(update={"small_lm": self.student})) or LEXICAL)
            self._judge_lm = self._scorer.judge_lm
        return self._scorer


def _tokens_trained(stage: StageFolder) -> int | None:
    from lmcot.curves import tokens_trained

    return tokens_trained(stage.train_log())


def _draw_curves(out: Path, stage: StageFolder) -> None:
    """``OUT/plots/<stage>_curves.png`` from the stage's train_log.json: the loss, and for RL each
    reward's mean per step."""
    from lmcot.curves import curve_series, draw_curves

    heading = {"kd": "KD (distillation)", "rl": "RL (policy optimisation)"}[stage.name]
    path = draw_curves(curve_series(stage.train_log()), out / "plots" / f"{stage.name}_curves.png", heading)
    if path is not None:
        say(f"{stage.name}:", "green", f"training curves: {path}")


def _checkpoint_dtype(folder: str, student) -> str:
    from lmcot.model_loading import checkpoint_dtype

    return checkpoint_dtype(folder, trust_remote_code=student.trust_remote_code) or "float32"


def save_dtype(setting: str, student) -> str:
    """The dtype of a compiled program's weights: ``small_lm.save_dtype``, where ``auto`` is the
    pretrained student's own (float32 when its config names none)."""
    if setting != "auto":
        return setting
    from lmcot.model_loading import checkpoint_dtype

    return checkpoint_dtype(student.model, trust_remote_code=student.trust_remote_code,
                            revision=student.revision) or "float32"


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another file system, or links not supported
        shutil.copy2(src, dst)



def compile_from_config(config: LMCoTConfig, out_dir: str | Path, *, progress: bool = True) -> dict[str, Any]:
    """What ``lmcot compile`` runs: load data, build both LMs, compile, return the metrics report."""
    from lmcot import distributed
    from lmcot.lms import build_lm, cache_in
    from lmcot.preflight import check_out_dir
    from lmcot.programs import LMGuidedCoT
    from lmcot.splits import load_split

    with cache_in(config.cache_dir):  # the splits' memos and every LM call, in the config's cache
        small_lm, large_lm = build_lm(config.small_lm), build_lm(config.large_lm)
        trainset = load_split(config, "train", small_lm=small_lm)
        valset = load_split(config, "dev", small_lm=small_lm) if config.data.dev else None
        program = LMGuidedCoT.from_config(small_lm, large_lm, config)
        check_out_dir(Path(out_dir))
        if distributed.is_main():
            # The whole resolved config (no secrets) once the data are read, as evaluate and experiment do.
            write_json(Path(out_dir) / "config.json", config.to_public_dict())
        return LMCoTCompiler(config, out_dir, progress=progress).compile_with_report(program, trainset, valset)[1]


def _check_task(cfg: LMCoTConfig, task, trainset: list[dspy.Example]) -> None:
    """What the task needs before the first paid call: a metric where one is asked for, and it works on a
    first example; the dataset's rationales where KD is to learn from them."""
    if cfg.kd.keep_metric == "metric" and "kd" in cfg.stages and task.metric is None:
        raise ConfigError("kd.keep_metric: 'metric' needs a metric (metric: 'module:function' in the config, "
                          "--set metric=..., or compile(..., metric=fn))")
    if task.metric is not None:
        task.metric.check_on(trainset[0])
    if "kd" in cfg.stages and cfg.kd.source in ("dataset", "both"):
        have = sum(1 for ex in trainset if str(ex.get("rationale") or "").strip())
        if not have:
            raise ConfigError(f"kd.source: {cfg.kd.source}: no training example has a rationale (map the column "
                              "with data.fields.rationale, or give dspy.Example(..., rationale=...))")
        if have < len(trainset):
            log.warning("kd.source: %s: %d of %d training examples have no rationale of their own",
                        cfg.kd.source, len(trainset) - have, len(trainset))

"""The LM-guided CoT compiler: teacher bootstrap -> distillation (``kd``) -> RL (``rl``).

    compiler = LMCoTCompiler(config, out_dir="runs/hotpot")
    compiled = compiler.compile(LMGuidedCoT(small_lm, large_lm), trainset, valset)

or from the shell: ``lmcot compile --config configs/quickstart.yaml --out runs/quickstart``.

Like a DSPy optimizer, ``compile`` returns a *new* program and leaves its input untouched. Only the
small LM is trained; the large LM's answer step is frozen and never becomes training data. Each
stage writes its outputs under ``OUT/<stage>/`` and a ``DONE.json`` last, so a rerun skips finished
stages and resumes an interrupted one (traces file, DSPy disk cache, trainer checkpoints).

    OUT/program.json   OUT/small_lm/   OUT/kd/   OUT/rl/   OUT/metrics.json
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import dspy
from rich.console import Console

from lmcot.config import ASPECTS, ConfigError, LMCoTConfig
from lmcot.errors import RunError
from lmcot.jsonl import write_json
from lmcot.optimizers.dev_report import answer_leak_share, cut_at_max_tokens, evidence_share
from lmcot.optimizers.progress import note
from lmcot.optimizers.stage_markers import (DONE, invalidate_checkpoints_if_changed, invalidate_traces_if_changed,
                                            rollout_sampling, sampling_settings, stage_done, stage_key,
                                            trained_settings)

log = logging.getLogger(__name__)
console = Console(stderr=True)


class LMCoTCompiler:
    def __init__(self, config: LMCoTConfig, out_dir: str | Path = "runs/lmcot", *, progress: bool = True):
        self.config = config
        self.out = Path(out_dir)
        self.progress = progress

    # -- the stages ------------------------------------------------------------------------
    def compile(self, program, trainset: list[dspy.Example], valset: list[dspy.Example] | None = None):
        """A new program whose small LM is trained (see the module docstring)."""
        return self.compile_with_report(program, trainset, valset)[0]

    def compile_with_report(self, program, trainset: list[dspy.Example], valset: list[dspy.Example] | None = None,
                            ) -> tuple[Any, dict[str, Any]]:
        """``compile``, and the dev report it also writes to ``OUT/metrics.json``."""
        from lmcot import distributed
        from lmcot.lms import build_lm, configure_cache

        cfg = self.config
        if getattr(program, "rationale_form", cfg.kd.rationale_form) != cfg.kd.rationale_form:
            # kd.rationale_form decides the form the student is trained and run in (a copy; the input stays).
            program = program.with_rationale_form(cfg.kd.rationale_form)
        run = _Run(cfg, program, trainset)
        if distributed.world_size() > 1 and "rl" in cfg.stages:
            from lmcot.model_loading import is_encoder_decoder

            # TRL's GRPO/RLOO trainers run data-parallel; lmcot's own seq2seq loop has not been made to.
            if is_encoder_decoder(run.student.model, trust_remote_code=run.student.trust_remote_code,
                                  revision=run.student.revision):
                raise ConfigError(f"stages={cfg.stages}: an encoder-decoder student's RL loop runs as one process; "
                                 "run rl as one process (--stages rl resumes from a multi-process KD)")
        if not trainset:
            raise ConfigError("compile needs a non-empty trainset (data.train)")
        from lmcot.preflight import check_out_dir

        check_out_dir(self.out)  # before the first paid call
        if cfg.kd.trainer_args or cfg.rl.trainer_args:
            from lmcot.model_loading import is_encoder_decoder
            from lmcot.optimizers.training import check_all_trainer_args

            # Before the first paid call: a typo in a trainer setting must not wait for training.
            check_all_trainer_args(cfg, is_encoder_decoder(run.student.model, trust_remote_code=run.student.trust_remote_code,
                                                           revision=run.student.revision))
        configure_cache(cfg.cache_dir)  # teacher, answer and judge calls are cached on disk
        main = distributed.is_main()  # several processes: only the main one calls LMs and writes files
        if main:
            self.out.mkdir(parents=True, exist_ok=True)
        checkpoint = run.student.model
        report: dict[str, Any] = {"stages": list(cfg.stages)}

        if valset and main:
            report["untrained"] = self._evaluate(run, program, valset, "untrained", aspects="rl" in cfg.stages)
        if "kd" in cfg.stages:
            checkpoint = self._stage_kd(run, trainset, checkpoint)
        elif (self.out / "kd" / DONE).exists():
            # `--stages rl` after an earlier `--stages kd`: RL starts from that KD checkpoint.
            checkpoint = str(self.out / "kd" / "model")
            note("rl", "green", f"starts from the KD checkpoint of an earlier run: {checkpoint}")
        if "rl" in cfg.stages:
            if valset and main:
                before_rl = self._with_small(run, checkpoint, "before-rl")
                report["before_rl"] = self._evaluate(run, before_rl, valset, "before RL", aspects=True)
                _release(before_rl.small_lm)  # RL trains its own copy of these weights
                del before_rl
            checkpoint = self._stage_rl(run, trainset, checkpoint)
        if not main:
            return None, report  # the main process writes the program folder and evaluates it

        final = self.out / "small_lm"
        if Path(checkpoint).resolve() != final.resolve():
            tmp = self.out / ".small_lm.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            # Hard links: OUT/small_lm and the stage's model folder share one copy of the weights on disk.
            shutil.copytree(checkpoint, tmp, copy_function=_link_or_copy)
            shutil.rmtree(final, ignore_errors=True)
            tmp.rename(final)
        label = f"{self.out.name}-{cfg.stages[-1] if cfg.stages else 'base'}"
        compiled = program.deepcopy()
        compiled.rationalize.lm = build_lm(run.student.model_copy(update={"model": str(final)}), name=label)

        from lmcot.programs.program_io import save_program

        # relative to the program folder: the folder moves as a whole
        saved_cfg = cfg.model_copy(update={"small_lm": run.student.model_copy(update={"model": "small_lm"})}, deep=True)
        save_program(compiled, self.out, saved_cfg, small_lm_label=label)
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

        cfg, kd_dir = self.config, self.out / "kd"
        teacher = build_lm(cfg.kd.teacher) if cfg.kd.teacher else run.program.large_lm
        # What the teacher traces depend on (not api_base: a local server's port changes between runs).
        traces_key = stage_key({"teacher": teacher.model, "teacher_kwargs": sampling_settings(teacher), "kd_temperature":
                           cfg.kd.temperature})
        key = stage_key({"traces": traces_key, "kd": cfg.kd.model_dump(mode="json"), "small_lm": trained_settings(run.student),
                    **run.origin})
        done = stage_done(kd_dir, key, remove_stale=distributed.is_main())
        distributed.wait_for_everyone()  # every process has read the marker before it can change
        if done:
            note("kd:", "green", f"complete under {kd_dir}, skipped")
            return str(kd_dir / "model")
        # The teacher bootstrap runs on the main process only; the others get its kept rationales.
        outcome = None
        if distributed.is_main():
            invalidate_traces_if_changed(kd_dir, traces_key)
            console.rule("[bold]stage kd[/]: teacher rationales")
            outcome = self._bootstrap(trainset, teacher, kd_dir)
        kept, failure = distributed.broadcast(outcome)
        if failure:
            raise RunError(failure)
        processes = distributed.describe()
        # Training loads its own copy of the student: no in-process LM or scoring model serves KD, so
        # none stays resident beside the trainer's weights, gradients and optimizer state (each loads
        # again when the next evaluation needs it).
        _release(run.program.small_lm, run.program.large_lm, teacher)
        run.release_scorer_models()
        _log_memory("before KD training")
        console.rule(f"[bold]stage kd[/]: distil {len(kept)} rationales into the small LM ({processes})")
        model_dir = distill(kept, student, kd_dir, cfg.kd, run.student, progress=self.progress)
        _log_memory("after KD training")
        if distributed.is_main():
            console.print(f"kd: trained on {processes}", highlight=False)
            write_json(kd_dir / DONE, {"model": "model", "key": key, "kept": len(kept), "processes": processes,
                                       "summary": self._kd_summary})
            # The stage is finished: its resume checkpoints (weights + optimizer state, ~3x the model)
            # serve nothing any more. A changed setting retrains from the start weights.
            shutil.rmtree(kd_dir / "checkpoints", ignore_errors=True)
        distributed.wait_for_everyone()
        return str(model_dir)

    def _bootstrap(self, trainset: list[dspy.Example], teacher, kd_dir: Path) -> tuple[list, str | None]:
        """Teacher rationales: (kept rows, None) or ([], why KD cannot go on)."""
        from lmcot.optimizers.bootstrap import bootstrap_traces

        cfg = self.config
        result = bootstrap_traces(trainset, teacher, cfg.kd, kd_dir, progress=self.progress)
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
            note("kd:", "green", f"evidence form: answer statements removed from {counts['stated']} of "
                 f"{len(result.kept)} kept rationales ({counts['dropped']} left empty and dropped)")
            if not rows:
                return [], (f"kd: kd.rationale_form=evidence left no rationale to distil (every kept rationale was "
                            f"only an answer statement); see {kd_dir}/traces.jsonl")
        return rows, None

    def _stage_rl(self, run: _Run, trainset: list[dspy.Example], start: str) -> str:
        from lmcot import distributed
        from lmcot.optimizers.rewards import RewardSet
        from lmcot.optimizers.rl import run_rl

        cfg, rl_dir = self.config, self.out / "rl"
        kd_done = self.out / "kd" / DONE
        start_key = run.origin["student"]  # RL straight from the pretrained student ...
        if kd_done.exists() and Path(start).resolve() == (self.out / "kd" / "model").resolve():
            start_key = json.loads(kd_done.read_text()).get("key")  # ... or from this folder's KD model
        # Checkpoints stay resumable when only the step budget or logging changes; anything else that
        # shapes training (start weights, rewards, algorithm, data) makes old checkpoints stale.
        resume_key = stage_key({"start": start_key, "rl": cfg.rl.model_dump(
            mode="json", exclude={"max_steps", "save_steps", "logging_steps", "report_to", "reward_concurrency"}),
            "metrics": cfg.rationale_metrics.model_dump(mode="json"), "answer_lm": run.program.large_lm.model,
            "rationale_form": cfg.kd.rationale_form,
            "small_lm": trained_settings(run.student), "train": run.origin["train"], **rollout_sampling(run.student)})
        key = stage_key({"resume": resume_key, "max_steps": cfg.rl.max_steps})
        # Every process decides the same (the marker is read before anyone writes); the main one alone
        # moves stale checkpoints aside, and the others wait for it.
        done = stage_done(rl_dir, key, remove_stale=distributed.is_main())
        distributed.wait_for_everyone()
        if done:
            note("rl:", "green", f"complete under {rl_dir}, skipped")
            return str(rl_dir / "model")
        if distributed.is_main():
            invalidate_checkpoints_if_changed(rl_dir, resume_key)
        distributed.wait_for_everyone()
        processes = distributed.describe()
        console.rule(f"[bold]stage rl[/]: policy optimisation on rationale quality + answer F1 ({processes})")
        # The untrained student's weights serve RL nothing (the large LM and the scorer's models do).
        _release(run.program.small_lm)
        # Each process scores its own rollouts: TRL splits the prompts, so no reward call is made twice.
        rewards = RewardSet(cfg.rl, run.program.large_lm, run.scorer(), concurrency=cfg.rl.reward_concurrency)
        _log_memory("before RL training")
        model_dir = run_rl(start, trainset, rewards, cfg.rl, run.student, rl_dir, rationale_form=cfg.kd.rationale_form)
        from lmcot.memory import free_memory

        free_memory()  # the trainer's models and optimizer state are gone: return their pages to the OS
        _log_memory("after RL training")
        if distributed.is_main():
            console.print(f"rl: trained on {processes}", highlight=False)
            write_json(rl_dir / DONE, {"model": "model", "key": key, "start": start, "processes": processes})
            shutil.rmtree(rl_dir / "checkpoints", ignore_errors=True)  # finished: no resume state to keep
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
                                         progress=self.progress, what=f"{label} dev evaluation")
        if summary["errors"]:
            first = next(r["error"] for r in rows if r["error"])
            note(f"{label}:", "yellow", f"{summary['errors']} of {len(rows)} dev examples failed (scored 0); "
                  f"first error: {first}")
        cut = cut_at_max_tokens(rows, hf_engine_of(program.small_lm), self.config.small_lm.max_tokens)
        result: dict[str, Any] = {**{k: summary[k] for k in ("em", "f1", "n", "errors")},
                                  **evidence_share(rows, valset), "rationales_cut": cut, **answer_leak_share(rows)}
        if cut:
            note(f"{label}:", "yellow", f"{cut} of {len(rows)} rationales stopped at small_lm.max_tokens="
                  f"{self.config.small_lm.max_tokens} (not at EOS)")
        # Each point's rationales, for reading what training changed (the quickstart prints a few).
        from lmcot.jsonl import atomic_write_text

        atomic_write_text(self.out / "dev" / f"{label.replace(' ', '_')}.jsonl",
                          "".join(json.dumps(r, default=str) + "\n" for r in rows))
        if aspects:
            from lmcot.metrics.rationale import summarize

            by_id = {ex.id: ex for ex in valset}
            items = [{"question": r["question"], "context": by_id[r["id"]].context,
                      "paragraphs": by_id[r["id"]].paragraphs, "rationale": r.get("rationale") or ""} for r in rows]
            result["aspects"] = summarize(run.scorer().score(items, list(ASPECTS)))
        return result


class _Run:
    """The state of one ``compile()`` call, so a second call on the same compiler starts afresh."""

    def __init__(self, config: LMCoTConfig, program, trainset: list[dspy.Example]):
        from lmcot.hf_engine import hf_engine_of
        from lmcot.lms import small_lm_config

        engine = hf_engine_of(program.small_lm)
        if engine is None:
            raise ConfigError("small_lm must be an in-process transformers model (small_lm.backend: transformers) "
                              "to be trained")
        self.config, self.program = config, program
        # The student's weights *and* settings come from the program's small LM (one source).
        self.student = small_lm_config(program.small_lm)
        self.origin = {"student": engine.fingerprint, "train": sorted(str(ex.id) for ex in trainset)}
        self._scorer = None
        self._judge_lm = None

    def release_scorer_models(self) -> None:
        """Drop the scorer's loaded models (reference LM, embedder, an in-process judge) until next use."""
        if self._scorer is not None:
            self._scorer.release()
        _release(self._judge_lm)

    def scorer(self):
        """One scorer for this compile (it holds the reference LM and the judge), built on first use."""
        if self._scorer is None:
            from lmcot.lms import build_lm
            from lmcot.metrics.rationale import RationaleScorer, reference_lm_for

            cfg = self.config.rationale_metrics
            judge_lm = None
            if any(b == "judge" for b in cfg.backends.values()):
                judge_lm = build_lm(cfg.judge) if cfg.judge else self.program.large_lm
            self._judge_lm = judge_lm
            # Perplexity-based aspects need a fixed reader of English: the student before any training
            # (scoring with the policy itself would reward it for agreeing with itself), when it is a
            # causal LM; otherwise (T5) the lexical proxy, unless reference_lm names one (or "lexical").
            reference = reference_lm_for(self.config.model_copy(update={"small_lm": self.student}))
            self._scorer = RationaleScorer(cfg, judge_lm=judge_lm, reference_lm=reference)
        return self._scorer


def _release(*lms) -> None:
    """Drop the weights of the in-process LMs among ``lms`` (they load again on their next call)."""
    from lmcot.hf_engine import hf_engine_of

    for lm in lms:
        engine = hf_engine_of(lm) if lm is not None else None
        if engine is not None:
            engine.release()


def _log_memory(where: str) -> None:
    """The process's resident memory at a stage boundary (``--verbose`` shows it)."""
    from lmcot.memory import rss_mb

    log.info("memory %s: %s MB resident", where, rss_mb())


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another file system, or links not supported
        shutil.copy2(src, dst)


def compile_from_config(config: LMCoTConfig, out_dir: str | Path, *, progress: bool = True) -> dict[str, Any]:
    """What ``lmcot compile`` runs: load data, build both LMs, compile, return the metrics report."""
    from lmcot.programs.evaluation import guided_program
    from lmcot.lms import build_lm, configure_cache
    from lmcot.splits import context_token_counter, load_split

    configure_cache(config.cache_dir)
    small_lm, large_lm = build_lm(config.small_lm), build_lm(config.large_lm)
    count = context_token_counter(config, small_lm)
    trainset = load_split(config, "train", count_tokens=count)
    valset = load_split(config, "dev", count_tokens=count) if config.data.dev else None
    program = guided_program(small_lm, large_lm, config)
    return LMCoTCompiler(config, out_dir, progress=progress).compile_with_report(program, trainset, valset)[1]

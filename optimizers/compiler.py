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

This file is the orchestration: the stages' order, the dev evaluations between them, the program
folder. Each stage reads top to bottom in its own file: ``kd_stage`` in ``distill.py``, ``rl_stage`` in
``rl.py``.

    OUT/program.json   OUT/small_lm/   OUT/kd/   OUT/rl/   OUT/metrics.json
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dspy

from lmcot.config import ASPECTS, ConfigError, LMCoTConfig
from lmcot.jsonl import write_json
from lmcot.optimizers.dev_report import answer_leak_share, cut_at_max_tokens
from lmcot.console import say
from lmcot.optimizers.stage import StageFolder, release, replacing_folder

if TYPE_CHECKING:
    from lmcot.model_loading import ModelSource

log = logging.getLogger(__name__)


class LMCoTCompiler:
    def __init__(self, config: LMCoTConfig, out_dir: str | Path = "runs/lmcot", *, progress: bool = True,
                 sources: dict[str, ModelSource] | None = None):
        """``sources``: in-process models already resolved, by role (``lmcot.preflight.check_local``):
        an in-process ``kd.teacher`` or judge is built from its own instead of resolved again."""
        self.config = config
        self.out = Path(out_dir)
        self.progress = progress
        self.sources = dict(sources or {})

    # -- the stages in order, and the evaluations between them -----------------------------
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
        run = _Run(cfg, program, [], task, sources=self.sources)  # the student's settings first; the examples' ids once prepared
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

        preflight_training(cfg, run.student, self.out, source=run.source)
        from lmcot.run_lock import output_lock

        from lmcot.lms import cache_in

        # A second run on this folder fails at once; DSPy's global cache is as it was after the compile.
        with output_lock(self.out, "LMCoTCompiler.compile"), cache_in(self.config.cache_dir):
            return self._compile(run, program, trainset, valset)

    def _compile(self, run: _Run, program, trainset: list[dspy.Example], valset: list[dspy.Example] | None,
                 ) -> tuple[Any, dict[str, Any]]:
        from lmcot import distributed
        from lmcot.lms import build_checkpoint_lm

        cfg = self.config
        main = distributed.is_main()  # several processes: only the main one calls LMs and writes files
        if main:
            self.out.mkdir(parents=True, exist_ok=True)
        checkpoint = run.student.model
        report: dict[str, Any] = {"stages": list(cfg.stages)}

        if valset and main:
            report["untrained"] = self._evaluate(run, program, valset, "untrained", aspects="rl" in cfg.stages)
        if "kd" in cfg.stages:
            from lmcot.optimizers.distill import kd_stage

            checkpoint = kd_stage(run, trainset, checkpoint, self.out, progress=self.progress)
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
            from lmcot.optimizers.rl import rl_stage

            checkpoint = rl_stage(run, trainset, checkpoint, self.out)
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
        compiled.rationalize.lm = build_checkpoint_lm(run.student, final, label)

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

    # -- helpers -----------------------------------------------------------------------------
    def _with_small(self, run: _Run, checkpoint: str, label: str):
        from lmcot.lms import build_checkpoint_lm

        copy = run.program.deepcopy()
        copy.rationalize.lm = build_checkpoint_lm(run.student, checkpoint, f"{self.out.name}-{label}")
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
    """The state of one ``compile()`` call, so a second call on the same compiler starts afresh. The
    stages read it: config, program, student (settings), task, origin (the start weights' fingerprint,
    the training ids), scorer() and judge_lm."""

    def __init__(self, config: LMCoTConfig, program, trainset: list[dspy.Example], task=None, *,
                 sources: dict[str, ModelSource] | None = None):
        from lmcot.hf_engine import hf_engine_of
        from lmcot.lms import small_lm_config

        engine = hf_engine_of(program.small_lm)
        if engine is None:
            raise ConfigError("small_lm must be an in-process transformers model (small_lm.backend: transformers) "
                              "to be trained")
        self.config, self.program, self.task = config, program, task
        self.sources = dict(sources or {})  # in-process models the checks resolved, by role (the teacher, the judge)
        # The student's weights *and* settings come from the program's small LM (one source).
        self.student = small_lm_config(program.small_lm)
        self.source = engine.source  # the start weights as resolved when the LM was built
        self.origin = {"student": engine.fingerprint, "train": sorted(str(ex.id) for ex in trainset)}
        self._scorer = None
        self.judge_lm = None

    def release_scorer_models(self) -> None:
        """Drop the scorer's loaded models (reference LM, embedder, an in-process judge) until next use."""
        if self._scorer is not None:
            self._scorer.release()
        release(self.judge_lm)

    def scorer(self):
        """One scorer for this compile (it holds the reference LM and the judge), built on first use."""
        if self._scorer is None:
            from lmcot.metrics.rationale import LEXICAL, reference_lm_for, scorer_from_config

            rm = self.config.rationale_metrics
            # Perplexity needs a fixed reader of English: the student before any training (scoring with the
            # policy would reward it for agreeing with itself) when causal; else the lexical proxy, unless
            # reference_lm names one.
            untrained = self.config.model_copy(update={"small_lm": self.student})
            reference = reference_lm_for(untrained, small_source=self.source) or LEXICAL
            # The judge: rationale_metrics.judge, else this program's own large LM (not the config's).
            judged = any(b == "judge" for b in rm.backends.values())
            self._scorer = scorer_from_config(self.config, reference_lm=reference, sources=self.sources,
                                              judge_lm=None if rm.judge or not judged else self.program.large_lm)
            self.judge_lm = self._scorer.judge_lm
        return self._scorer


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



def compile_from_config(config: LMCoTConfig, out_dir: str | Path, *, progress: bool = True,
                        sources: dict[str, ModelSource] | None = None) -> dict[str, Any]:
    """What ``lmcot compile`` runs: load data, build both LMs, compile, return the metrics report.
    ``sources``: in-process models already resolved, by role (``lmcot.preflight.check_local``),
    so the LMs are built from them instead of resolving them again."""
    from lmcot import distributed
    from lmcot.lms import build_lms, cache_in
    from lmcot.preflight import check_out_dir
    from lmcot.programs import LMGuidedCoT
    from lmcot.splits import load_split

    with cache_in(config.cache_dir):  # the splits' memos and every LM call, in the config's cache
        lms = build_lms(config, sources=sources)
        small_lm, large_lm = lms["small_lm"], lms["large_lm"]
        trainset = load_split(config, "train", small_lm=small_lm)
        valset = load_split(config, "dev", small_lm=small_lm) if config.data.dev else None
        program = LMGuidedCoT.from_config(small_lm, large_lm, config)
        check_out_dir(Path(out_dir))
        if distributed.is_main():
            # The whole resolved config (no secrets) once the data are read, as evaluate and experiment do.
            write_json(Path(out_dir) / "config.json", config.to_public_dict())
        return LMCoTCompiler(config, out_dir, progress=progress, sources=sources).compile_with_report(
            program, trainset, valset)[1]


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

"""``lmcot experiment``: run the grid of an ``experiment:`` config section and write
``OUT/results.json`` (every per-question prediction behind the report), then the report.

    run_experiment(load_config("configs/experiment-quickstart.yaml"), "runs/exp")

Order: load the dev (and train) set and check the config before any paid call; train the students
(compiler stages, resumable); then one step per method row, per student's aspect scores and for the
rationale-quality analysis. Each step's result is saved as it finishes (``steps.py``), every LM call
goes through DSPy's disk cache: a rerun after Ctrl-C or SIGKILL skips finished steps and pays for no
call twice.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from lmcot.config import LMCoTConfig
from lmcot.experiment.grid import MethodSpec, method_grid, student_form, students_needed
from lmcot.experiment.steps import Steps
from lmcot.keyed import key_of
from lmcot.jsonl import write_json

if TYPE_CHECKING:
    from lmcot.model_loading import ModelSource

FORMAT = "lmcot-experiment/1"


def _lm_identity(lm_cfg) -> dict[str, Any]:
    # What shapes the answers; not api_base (a local server's port changes between runs) nor secrets.
    return lm_cfg.model_dump(mode="json", include={"model", "temperature", "max_tokens", "top_p", "seed", "extra"})


class _Run:
    def __init__(self, cfg: LMCoTConfig, out: Path, say: Callable[[str], None], progress: bool,
                 sources: dict[str, ModelSource] | None = None):
        self.cfg, self.out, self.say, self.progress = cfg, out, say, progress
        self.sources = dict(sources or {})  # in-process models the checks resolved, by role
        self.steps = Steps(out, say)
        self._students: dict[str, Any] = {}
        self._scorer = None

    # -- models ---------------------------------------------------------------------------
    def student(self, name: str):
        from lmcot.lms import build_checkpoint_lm

        if name not in self._students:
            if name == "untrained":
                self._students[name] = self.base_small
            else:
                self._students[name] = build_checkpoint_lm(self.cfg.small_lm, self.paths[name],
                                                           f"{self.out.name}-{name}")
        return self._students[name]

    def scorer(self):
        if self._scorer is None:
            from lmcot.metrics.rationale import scorer_from_config

            self._scorer = scorer_from_config(self.cfg, sources=self.sources)
        return self._scorer

    def scorer_identity(self) -> dict[str, Any]:
        return {"metrics": self.cfg.rationale_metrics.model_dump(mode="json"),
                "judge": _lm_identity(self.cfg.judge()), "small_lm": self.cfg.small_lm.model}

    # -- one method row -------------------------------------------------------------------
    def program(self, spec: MethodSpec):
        from lmcot.programs import CoTSelfConsistency, LMGuidedCoT
        from lmcot.programs.evaluation import build_program

        exp = self.cfg.experiment
        if spec.kind in ("standard", "cot"):
            return build_program(spec.kind, None, self.large, self.cfg)
        if spec.kind == "cot_sc":  # votes compare answers as the task does ("$18" == "18" for numbers)
            return CoTSelfConsistency(self.large, spec.k, exp.sample_temperature, answer_key=self.task.vote_key)
        # One scorer for every row, so the models load once and its seconds are metered per row.
        return LMGuidedCoT.from_config(self.student(spec.student), self.large, self.cfg, num_samples=spec.k,
                                       sample_temperature=exp.sample_temperature, select=spec.select,
                                       rationale_form=student_form(spec.student, self.cfg.kd.rationale_form),
                                       scorer=self.scorer() if spec.select != "vote" else None)

    def run_method(self, spec: MethodSpec) -> dict[str, Any]:
        """One method row on the dev set, and what it costs on its own (``lmcot.usage``'s rule: calls
        answered from the cache count the tokens and small-LM seconds recorded when they were made,
        so the top-quality row counts the k samples it reads although self-consistency drew them)."""
        from lmcot.programs.evaluation import predict_all
        from lmcot.usage import UsageMeter

        program = self.program(spec)
        small = self.student(spec.student) if spec.student else None
        scorer = self.scorer() if spec.select != "vote" else None
        # The large LM's calls, and the judge's when rationales are scored to pick one (paid per row too).
        large_meter = UsageMeter([self.large, getattr(scorer, "judge_lm", None)])
        small_meter = UsageMeter([small])
        scoring_start = scorer.seconds if scorer is not None else 0.0
        start = time.perf_counter()
        rows = predict_all(program, self.dev, concurrency=self.cfg.eval.concurrency, label=spec.name,
                           progress=self.progress, task=self.task)
        failed = [r["error"] for r in rows if r.get("error")]
        if rows and len(failed) == len(rows):
            from lmcot.errors import RunError

            raise RunError(f"{spec.name}: every dev example failed; first error: {failed[0]}")
        large, generated = large_meter.report(), small_meter.report()
        usage = {"model": self.large.model, **{k: large[k] for k in ("calls", "cached_calls", "estimated_calls",
                                                                     "prompt_tokens", "completion_tokens",
                                                                     "cached_tokens")},
                 "cost_usd": large["cost"], "paid_cost_usd": large["paid_cost"],
                 "small_lm_seconds": generated["small_lm_seconds"], "small_lm_untimed_calls": generated["untimed_calls"],
                 "scoring_seconds": round(scorer.seconds - scoring_start, 3) if scorer is not None else 0.0,
                 "seconds": round(time.perf_counter() - start, 3), "small_lm": small.model if small else None}
        for r in rows:
            r.pop("method", None)
        return {"rows": rows, "usage": usage}

    def method_key(self, spec: MethodSpec) -> str:
        exp = self.cfg.experiment
        parts: dict[str, Any] = {"spec": spec.to_dict(), "large_lm": _lm_identity(self.cfg.large_lm),
                                 "dev": [ex.id for ex in self.dev], "temperature": exp.sample_temperature}
        if self.task.answer_type != "span" or self.task.metric is not None:  # how the rows are scored
            parts["task"] = [self.task.answer_type, self.task.labels, self.task.metric_name]
        if spec.student:
            parts["small_lm"] = self.student(spec.student).model  # hf/<label>@<weights hash>
            parts["small_lm_cfg"] = _lm_identity(self.cfg.small_lm)
            form = student_form(spec.student, self.cfg.kd.rationale_form)
            if form != "full":  # the prompt differs (keys of full-form rows stay as they were)
                parts["rationale_form"] = form
        if spec.select != "vote":
            parts["scorer"] = self.scorer_identity()
        return key_of(parts)

    # -- rationale scores -----------------------------------------------------------------
    def score_rows(self, items: list[dict[str, Any]]) -> list[dict[str, float]]:
        from lmcot.metrics.rationale import rationale_row

        by_id = {ex.id: ex for ex in self.dev}
        rows = [rationale_row(by_id[i["id"]], i["rationale"]) for i in items]
        return self.scorer().score(rows, progress=self.progress)

    def aspects_step(self, method: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
        items = [{"id": r["id"], "rationale": r.get("rationale") or ""} for r in rows]
        key = key_of({"items": items, "scorer": self.scorer_identity()})

        def run() -> dict[str, Any]:
            scores = self.score_rows(items)
            return {"method": method, "scores": [{"id": i["id"], **s} for i, s in zip(items, scores)]}

        return self.steps.run(f"aspects-{method}", key, run)

    def quality_step(self, method: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
        items = [{"id": r["id"], "rationale": x} for r in rows for x in (r.get("rationales") or [])]
        key = key_of({"items": items, "scorer": self.scorer_identity()})

        def run() -> dict[str, Any]:
            flat = self.score_rows(items)
            out, i = [], 0
            for r in rows:
                k = len(r.get("rationales") or [])
                out.append({"id": r["id"], "scores": flat[i:i + k]})
                i += k
            return {"method": method, "rows": out}

        return self.steps.run("quality-scores", key, run)


def run_experiment(cfg: LMCoTConfig, out_dir: str | Path, *, progress: bool = True,
                   say: Callable[[str], None] | None = None,
                   sources: dict[str, ModelSource] | None = None) -> dict[str, Any]:
    """Run (or resume) the experiment; returns the results dict written to ``OUT/results.json``.
    ``say``: where its progress lines go (default: stderr through ``lmcot.console.say``, redacted).
    ``sources``: in-process models already resolved, by role (``lmcot.preflight.check_local``),
    so the LMs are built from them instead of resolving them again."""
    from lmcot.console import say as console_say
    from lmcot.lms import cache_in

    if say is None:
        def say(message: str) -> None:
            console_say("experiment", "bold cyan", message)
    with cache_in(cfg.cache_dir):  # every LM call in the config's cache; DSPy's global one as it was after
        return _run_experiment(cfg, Path(out_dir), progress, say, sources)


def _run_experiment(cfg: LMCoTConfig, out: Path, progress: bool, say: Callable[[str], None],
                    sources: dict[str, ModelSource] | None) -> dict[str, Any]:
    from lmcot.lms import build_lms
    from lmcot.metrics.task_metric import TaskMetric
    from lmcot.splits import load_split

    exp = cfg.experiment
    form = cfg.kd.rationale_form
    grid, names = method_grid(exp, main_form=form), students_needed(exp, main_form=form)
    from lmcot.config import ConfigError
    from lmcot.data import DataError

    task = TaskMetric.from_config(cfg)  # imports the user metric, if any: a bad path fails now

    if not grid:
        raise ConfigError("config: experiment: the grid is empty (no baselines, students or analysis)")
    if names and cfg.small_lm.backend != "transformers":
        raise ConfigError("config: small_lm.backend must be 'transformers' to train and run the students")
    run = _Run(cfg, out, say, progress, sources)
    run.task = task
    lms = build_lms(cfg, ("small_lm", "large_lm") if names else ("large_lm",), sources=sources)
    run.base_small, run.large = lms.get("small_lm"), lms["large_lm"]
    # Both data sets are read and checked before the first paid call. Contexts are counted with the small
    # LM's tokenizer: the LM's, else (no student) its model as the checks resolved it.
    counter = run.base_small if run.base_small is not None else (sources or {}).get("small_lm")
    run.dev = load_split(cfg, "dev", limit=exp.dev_limit, small_lm=counter)
    if not run.dev:
        raise DataError(f"{cfg.data.dev}: the dev set is empty")
    trained = [n for n in names if n != "untrained"]
    trainset = load_split(cfg, "train", small_lm=counter) if trained else []
    if task.metric is not None:
        task.metric.check_on(run.dev[0])
    # The data has rationales of its own and KD learns from the teacher's: add the student distilled from them.
    if cfg.kd.source != "dataset" and any(str(ex.get("rationale") or "").strip() for ex in trainset):
        grid = method_grid(exp, dataset_rationales=True, main_form=form)
        names = students_needed(exp, dataset_rationales=True, main_form=form)
    if trained:
        from lmcot.experiment.students import training_config
        from lmcot.hf_engine import hf_engine_of
        from lmcot.optimizers.preflight import preflight_training

        # Every stage's trainer settings before the first paid call (the RL students' after KD's bootstrap),
        # against the small LM's model as it was resolved once (by the checks, or when it was built above).
        engine = hf_engine_of(run.base_small)
        preflight_training(training_config(cfg, names), cfg.small_lm, out,
                           source=engine.source if engine is not None else None)
    from lmcot.run_lock import output_lock

    with output_lock(out, "run_experiment"):  # a second run on this folder fails at once
        return _run_grid(run, cfg, out, grid, names, trainset, say, progress)


def _run_grid(run: _Run, cfg: LMCoTConfig, out: Path, grid: list[MethodSpec], names: list[str], trainset,
              say: Callable[[str], None], progress: bool) -> dict[str, Any]:
    """The experiment's steps, under the output folder's lock (see :func:`run_experiment`)."""
    from lmcot.experiment.students import train_students, training_records

    exp, task = cfg.experiment, run.task
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "config.json", cfg.to_public_dict())

    run.paths = train_students(cfg, out, names, trainset, run.base_small, run.large, say, progress,
                               sources=run.sources)

    results: dict[str, Any] = {
        "format": FORMAT, "config": cfg.to_public_dict(),
        "dev": {"dataset": cfg.data.dataset, "source": cfg.data.dev, "n": len(run.dev),
                "ids": [ex.id for ex in run.dev]},
        "large_lm": cfg.large_lm.model, "small_lm": cfg.small_lm.model,
        # How answers were scored, and whether the task has passages (no evidence columns without them).
        "task": {"answer_type": task.answer_type, "labels": list(task.labels) if task.labels else None,
                 "metric_name": task.metric_name, "describe": task.describe(),
                 "has_context": any(str(ex.get("context") or "").strip() for ex in run.dev)},
        "methods": {}, "aspects": {}, "quality": None,
        # The one-off cost of training each student, and its training curves (the report's last tables).
        "training": training_records(out, names),
    }
    for i, spec in enumerate(grid, start=1):
        result = run.steps.run(f"method-{spec.name}", run.method_key(spec), lambda: run.run_method(spec),
                               index=f"[{i}/{len(grid)}] ")
        results["methods"][spec.name] = {**spec.to_dict(), **result}

    # Rationale quality of each student's greedy rationales: KD vs KD+RL, and the ablation.
    for spec in grid:
        if spec.kind == "guided" and spec.k == 1:
            results["aspects"][spec.student] = run.aspects_step(spec.name, results["methods"][spec.name]["rows"])
    if exp.quality_analysis:
        sc = f"guided_{exp.quality_student}_sc"
        results["quality"] = {**run.quality_step(sc, results["methods"][sc]["rows"]),
                              "student": exp.quality_student, "k": exp.num_samples, "thresholds": exp.thresholds,
                              "seed": exp.seed}
    results["rendering"] = {"bootstrap_samples": exp.bootstrap_samples, "seed": exp.seed}
    write_json(out / "results.json", results)
    return results

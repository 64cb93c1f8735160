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
from typing import Any, Callable

from lmcot.config import LMCoTConfig
from lmcot.experiment.grid import MethodSpec, method_grid, student_form, students_needed
from lmcot.experiment.steps import Steps, step_key
from lmcot.jsonl import write_json

FORMAT = "lmcot-experiment/1"


def _lm_identity(lm_cfg) -> dict[str, Any]:
    # What shapes the answers; not api_base (a local server's port changes between runs) nor secrets.
    return lm_cfg.model_dump(mode="json", include={"model", "temperature", "max_tokens", "top_p", "seed", "extra"})


class _Run:
    def __init__(self, cfg: LMCoTConfig, out: Path, say: Callable[[str], None], progress: bool):
        self.cfg, self.out, self.say, self.progress = cfg, out, say, progress
        self.steps = Steps(out, say)
        self._students: dict[str, Any] = {}
        self._scorer = None
        from lmcot.experiment.cost import UsageLedger

        self.ledger = UsageLedger(out / "usage-ledger.jsonl")

    # -- models ---------------------------------------------------------------------------
    def student(self, name: str):
        from lmcot.lms import build_lm

        if name not in self._students:
            if name == "untrained":
                self._students[name] = self.base_small
            else:
                self._students[name] = build_lm(self.cfg.small_lm.model_copy(update={"model": self.paths[name]}),
                                                name=f"{self.out.name}-{name}")
        return self._students[name]

    def scorer(self):
        if self._scorer is None:
            from lmcot.metrics.rationale import scorer_from_config

            self._scorer = scorer_from_config(self.cfg)
        return self._scorer

    def scorer_identity(self) -> dict[str, Any]:
        return {"metrics": self.cfg.rationale_metrics.model_dump(mode="json"),
                "judge": _lm_identity(self.cfg.judge()), "small_lm": self.cfg.small_lm.model}

    # -- one method row -------------------------------------------------------------------
    def program(self, spec: MethodSpec):
        from lmcot.programs import CoTPrompting, CoTSelfConsistency, LMGuidedCoT, StandardPrompting

        exp = self.cfg.experiment
        if spec.kind == "standard":
            return StandardPrompting(self.large)
        if spec.kind == "cot":
            return CoTPrompting(self.large)
        if spec.kind == "cot_sc":
            return CoTSelfConsistency(self.large, spec.k, exp.sample_temperature)
        return LMGuidedCoT(self.student(spec.student), self.large, num_samples=spec.k,
                           sample_temperature=exp.sample_temperature, select=spec.select,
                           scorer=self.scorer() if spec.select != "vote" else None,
                           rationale_form=student_form(spec.student, self.cfg.kd.rationale_form))

    def run_method(self, spec: MethodSpec) -> dict[str, Any]:
        from lmcot.programs.evaluation import predict_all
        from lmcot.experiment.cost import LargeLMMeter, SmallLMClock
        from lmcot.hf_engine import hf_engine_of

        program = self.program(spec)
        small = self.student(spec.student) if spec.student else None
        meter = LargeLMMeter(self.large, self.ledger)
        start = time.perf_counter()
        with SmallLMClock(hf_engine_of(small) if small is not None else None) as clock:
            rows = predict_all(program, self.dev, concurrency=self.cfg.eval.concurrency, label=spec.name,
                               progress=self.progress)
        failed = [r["error"] for r in rows if r.get("error")]
        if rows and len(failed) == len(rows):
            from lmcot.errors import RunError

            raise RunError(f"{spec.name}: every dev example failed; first error: {failed[0]}")
        usage = {**meter.report(), "small_lm_seconds": round(clock.seconds, 3),
                 "seconds": round(time.perf_counter() - start, 3), "small_lm": small.model if small else None}
        for r in rows:
            r.pop("method", None)
        return {"rows": rows, "usage": usage}

    def method_key(self, spec: MethodSpec) -> str:
        exp = self.cfg.experiment
        parts: dict[str, Any] = {"spec": spec.to_dict(), "large_lm": _lm_identity(self.cfg.large_lm),
                                 "dev": [ex.id for ex in self.dev], "temperature": exp.sample_temperature}
        if spec.student:
            parts["small_lm"] = self.student(spec.student).model  # hf/<label>@<weights hash>
            parts["small_lm_cfg"] = _lm_identity(self.cfg.small_lm)
            form = student_form(spec.student, self.cfg.kd.rationale_form)
            if form != "full":  # the prompt differs (keys of full-form rows stay as they were)
                parts["rationale_form"] = form
        if spec.select != "vote":
            parts["scorer"] = self.scorer_identity()
        return step_key(parts)

    # -- rationale scores -----------------------------------------------------------------
    def score_rows(self, items: list[dict[str, Any]]) -> list[dict[str, float]]:
        by_id = {ex.id: ex for ex in self.dev}
        rows = [{"question": by_id[i["id"]].question, "context": by_id[i["id"]].context,
                 "paragraphs": by_id[i["id"]].paragraphs, "rationale": i["rationale"] or ""} for i in items]
        return self.scorer().score(rows, progress=self.progress)

    def aspects_step(self, method: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
        items = [{"id": r["id"], "rationale": r.get("rationale") or ""} for r in rows]
        key = step_key({"items": items, "scorer": self.scorer_identity()})

        def run() -> dict[str, Any]:
            scores = self.score_rows(items)
            return {"method": method, "scores": [{"id": i["id"], **s} for i, s in zip(items, scores)]}

        return self.steps.run(f"aspects-{method}", key, run)

    def quality_step(self, method: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
        items = [{"id": r["id"], "rationale": x} for r in rows for x in (r.get("rationales") or [])]
        key = step_key({"items": items, "scorer": self.scorer_identity()})

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
                   say: Callable[[str], None] = print) -> dict[str, Any]:
    """Run (or resume) the experiment; returns the results dict written to ``OUT/results.json``."""
    from lmcot.splits import context_token_counter, load_split
    from lmcot.experiment.students import train_students
    from lmcot.lms import build_lm, configure_cache

    out = Path(out_dir)
    exp = cfg.experiment
    grid = method_grid(exp, cfg.kd.rationale_form)
    names = students_needed(exp, cfg.kd.rationale_form)
    from lmcot.config import ConfigError
    from lmcot.data import DataError

    if not grid:
        raise ConfigError("config: experiment: the grid is empty (no baselines, students or analysis)")
    if names and cfg.small_lm.backend != "transformers":
        raise ConfigError("config: small_lm.backend must be 'transformers' to train and run the students")
    configure_cache(cfg.cache_dir)
    run = _Run(cfg, out, say, progress)
    run.base_small = build_lm(cfg.small_lm) if names else None
    run.large = build_lm(cfg.large_lm)
    count = context_token_counter(cfg, run.base_small)
    # Both data sets are read and checked before the first paid call.
    run.dev = load_split(cfg, "dev", limit=exp.dev_limit, count_tokens=count)
    if not run.dev:
        raise DataError(f"{cfg.data.dev}: the dev set is empty")
    trained = [n for n in names if n != "untrained"]
    trainset = load_split(cfg, "train", count_tokens=count) if trained else []
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "config.json", cfg.to_public_dict())

    run.paths = train_students(cfg, out, names, trainset, run.base_small, run.large, say, progress)

    results: dict[str, Any] = {
        "format": FORMAT, "config": cfg.to_public_dict(),
        "dev": {"dataset": cfg.data.dataset, "source": cfg.data.dev, "n": len(run.dev),
                "ids": [ex.id for ex in run.dev]},
        "large_lm": cfg.large_lm.model, "small_lm": cfg.small_lm.model,
        "methods": {}, "aspects": {}, "quality": None,
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

"""The small LMs of an experiment, trained by the compiler's own stages (``LMCoTCompiler``) so that
``lmcot experiment`` and ``lmcot compile`` resume, skip and cache in the same way:

    OUT/students/kd/            compile --stages kd        (KD checkpoint: OUT/students/kd/kd/model)
    OUT/students/kd_dataset/    compile --stages kd, kd.source: dataset (the task's own rationales)
    OUT/students/kd_rl/         compile --stages rl, rl.weights as configured      } each starts from
    OUT/students/rl_quality/    ... with answer_f1 = 0 (rationale-quality rewards)  } the same KD
    OUT/students/rl_answer/     ... with every aspect weight 0 (answer F1 only)     } checkpoint
    OUT/students/kd_<form>/     compile --stages kd with kd.rationale_form=<form> (experiment.rationale_forms)

Each RL folder's ``kd`` is a link to ``students/kd/kd``: the compiler then starts RL from that KD
checkpoint, exactly as ``lmcot compile --stages rl`` after ``--stages kd`` does.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable

from lmcot.aspects import ASPECTS
from lmcot.config import LMCoTConfig

RL_STUDENTS = {"kd_rl": "both", "rl_quality": "quality", "rl_answer": "answer"}


def variant_config(cfg: LMCoTConfig, variant: str) -> LMCoTConfig:
    """``cfg`` with the RL reward weights of an ablation variant (both / quality / answer)."""
    out = cfg.model_copy(deep=True)
    weights = out.rl.weights
    if variant == "quality":
        weights.answer_f1 = 0.0
    elif variant == "answer":
        f1 = weights.answer_f1 or 1.0
        for a in ASPECTS:
            setattr(weights, a, 0.0)
        weights.answer_f1 = f1
    return out


def training_config(cfg: LMCoTConfig, names: list[str]) -> LMCoTConfig:
    """``cfg`` with the compiler stages that training ``names`` runs (for the pre-flight checks)."""
    stages = (["kd"] if any(n != "untrained" for n in names) else []) + (["rl"] if set(names) & set(RL_STUDENTS) else [])
    return cfg.model_copy(update={"stages": stages})


def _link_kd(folder: Path, kd_stage: Path) -> None:
    link = folder / "kd"
    if link.is_symlink() or link.exists():
        return
    folder.mkdir(parents=True, exist_ok=True)
    try:
        os.symlink(os.path.relpath(kd_stage, folder), link, target_is_directory=True)
    except OSError:  # a file system without links: a copy works the same for the compiler
        from lmcot.optimizers.stage import replacing_folder

        # Copied aside and renamed in: a crash mid-copy never leaves a `kd` that looks finished.
        with replacing_folder(link) as tmp:
            shutil.copytree(kd_stage, tmp)


def train_students(cfg: LMCoTConfig, out: Path, names: list[str], trainset, base_small, large_lm,
                   say: Callable[[str], None], progress: bool = True, *, sources=None) -> dict[str, str]:
    """Train what ``names`` needs; returns ``{student: checkpoint folder}`` (``untrained``: the configured model).
    ``sources``: in-process models the checks resolved, by role (an in-process teacher or judge)."""
    from lmcot.optimizers.compiler import LMCoTCompiler
    from lmcot.programs import LMGuidedCoT

    def compile_student(student_cfg: LMCoTConfig, folder: Path) -> None:
        program = LMGuidedCoT(base_small, large_lm)
        LMCoTCompiler(student_cfg, folder, progress=progress, sources=sources).compile(program, trainset)

    paths: dict[str, str] = {}
    if "untrained" in names:
        paths["untrained"] = cfg.small_lm.model
    root = out / "students"
    if "kd" in names:
        say("student kd: teacher rationales + distillation (compiler stage kd)")
        kd_cfg = cfg.model_copy(deep=True)
        kd_cfg.stages = ["kd"]
        compile_student(kd_cfg, root / "kd")
        paths["kd"] = str(root / "kd" / "small_lm")
    if "kd_dataset" in names:
        say("student kd_dataset: distillation of the dataset's own rationales (compiler stage kd, kd.source: dataset)")
        own_cfg = cfg.model_copy(deep=True)
        own_cfg.stages, own_cfg.kd.source = ["kd"], "dataset"
        compile_student(own_cfg, root / "kd_dataset")
        paths["kd_dataset"] = str(root / "kd_dataset" / "small_lm")
    for name, variant in RL_STUDENTS.items():
        if name not in names:
            continue
        say(f"student {name}: RL from the KD checkpoint, rewards: {variant} (compiler stage rl)")
        folder = root / name
        _link_kd(folder, root / "kd" / "kd")
        rl_cfg = variant_config(cfg, variant)
        rl_cfg.stages = ["rl"]
        compile_student(rl_cfg, folder)
        paths[name] = str(folder / "small_lm")
    from lmcot.experiment.grid import FORMS

    for name in names:  # the extra rationale forms' students (experiment.rationale_forms)
        base, form = next(((name.removesuffix(f"_{f}"), f) for f in FORMS if name.endswith(f"_{f}")), (name, None))
        if form is None or base not in ("untrained", "kd"):
            continue
        if base == "untrained":
            paths[name] = cfg.small_lm.model
            continue
        say(f"student {name}: teacher rationales + distillation in the {form} form (compiler stage kd)")
        form_cfg = cfg.model_copy(deep=True)
        form_cfg.stages, form_cfg.kd.rationale_form = ["kd"], form
        compile_student(form_cfg, root / name)
        paths[name] = str(root / name / "small_lm")
    return paths


def training_record(folder: Path) -> dict[str, Any]:
    """What training one student cost and how it went, from its compile folder: per stage, the wall
    time and tokens trained, the teacher's calls (KD) or the reward calls (RL), and the curves of its
    ``train_log.json``. An RL student's folder links the shared KD stage, so its record holds both."""
    from lmcot.curves import curve_series, tokens_trained

    record: dict[str, Any] = {}
    for stage in ("kd", "rl"):
        done_path = folder / stage / "DONE.json"
        if not done_path.is_file():
            continue
        done = json.loads(done_path.read_text(encoding="utf-8"))
        log_path = folder / stage / "train_log.json"
        log = json.loads(log_path.read_text(encoding="utf-8")) if log_path.is_file() else []
        trained = done.get("tokens_trained")
        entry: dict[str, Any] = {
            "train_seconds": done.get("train_seconds"),
            "tokens_trained": trained if trained is not None else tokens_trained(log),
            "steps": max((int(e.get("step") or 0) for e in log), default=0),
            "curve": {k: [list(p) for p in v] for k, v in curve_series(log).items()},
        }
        if stage == "kd":
            summary = done.get("summary") or {}
            tokens = summary.get("tokens") or {}
            entry["teacher"] = {"calls": summary.get("teacher_calls", summary.get("new_calls")),
                                "prompt_tokens": tokens.get("prompt"), "completion_tokens": tokens.get("completion"),
                                "cost_usd": summary.get("cost"), "seconds": summary.get("seconds"),
                                "kept": summary.get("kept_examples")}
        else:
            usage = done.get("reward_usage") or {}
            entry["rewards"] = done.get("rewards")
            entry["reward_calls"] = {"calls": usage.get("calls"), "cached_calls": usage.get("cached_calls"),
                                     "prompt_tokens": usage.get("prompt_tokens"),
                                     "completion_tokens": usage.get("completion_tokens"),
                                     "cost_usd": usage.get("cost"), "scope": done.get("reward_usage_scope")}
        record[stage] = entry
    return record


def training_records(out: Path, names: list[str]) -> dict[str, dict[str, Any]]:
    """``{student: training_record}`` for every trained student (``untrained`` cost nothing)."""
    return {name: training_record(out / "students" / name) for name in names if name != "untrained"}

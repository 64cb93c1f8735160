"""The small LMs of an experiment, trained by the compiler's own stages (``LMCoTCompiler``) so that
``lmcot experiment`` and ``lmcot compile`` resume, skip and cache in the same way:

    OUT/students/kd/            compile --stages kd        (KD checkpoint: OUT/students/kd/kd/model)
    OUT/students/kd_rl/         compile --stages rl, rl.weights as configured      } each starts from
    OUT/students/rl_quality/    ... with answer_f1 = 0 (rationale-quality rewards)  } the same KD
    OUT/students/rl_answer/     ... with every aspect weight 0 (answer F1 only)     } checkpoint
    OUT/students/kd_<form>/     compile --stages kd with kd.rationale_form=<form> (experiment.rationale_forms)

Each RL folder's ``kd`` is a link to ``students/kd/kd``: the compiler then starts RL from that KD
checkpoint, exactly as ``lmcot compile --stages rl`` after ``--stages kd`` does.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable

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


def _link_kd(folder: Path, kd_stage: Path) -> None:
    link = folder / "kd"
    if link.is_symlink() or link.exists():
        return
    folder.mkdir(parents=True, exist_ok=True)
    try:
        os.symlink(os.path.relpath(kd_stage, folder), link, target_is_directory=True)
    except OSError:  # a file system without links: a copy works the same for the compiler
        shutil.copytree(kd_stage, link)


def train_students(cfg: LMCoTConfig, out: Path, names: list[str], trainset, base_small, large_lm,
                   say: Callable[[str], None], progress: bool = True) -> dict[str, str]:
    """Train what ``names`` needs; returns ``{student: checkpoint folder}`` (``untrained``: the configured model)."""
    from lmcot.optimizers.compiler import LMCoTCompiler
    from lmcot.programs import LMGuidedCoT

    paths: dict[str, str] = {}
    if "untrained" in names:
        paths["untrained"] = cfg.small_lm.model
    root = out / "students"
    if "kd" in names:
        say("student kd: teacher rationales + distillation (compiler stage kd)")
        kd_cfg = cfg.model_copy(deep=True)
        kd_cfg.stages = ["kd"]
        LMCoTCompiler(kd_cfg, root / "kd", progress=progress).compile(LMGuidedCoT(base_small, large_lm), trainset)
        paths["kd"] = str(root / "kd" / "small_lm")
    for name, variant in RL_STUDENTS.items():
        if name not in names:
            continue
        say(f"student {name}: RL from the KD checkpoint, rewards: {variant} (compiler stage rl)")
        folder = root / name
        _link_kd(folder, root / "kd" / "kd")
        rl_cfg = variant_config(cfg, variant)
        rl_cfg.stages = ["rl"]
        LMCoTCompiler(rl_cfg, folder, progress=progress).compile(LMGuidedCoT(base_small, large_lm), trainset)
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
        LMCoTCompiler(form_cfg, root / name, progress=progress).compile(LMGuidedCoT(base_small, large_lm), trainset)
        paths[name] = str(root / name / "small_lm")
    return paths

"""The method rows an ``experiment:`` config section asks for.

Names are stable keys of ``results.json``; labels are what the report prints. ``student`` names a
small LM: ``untrained``, ``kd``, ``kd_rl`` (RL with the configured weights from the KD checkpoint),
or ``rl_quality`` / ``rl_answer`` (the ablation's other reward sets from the same checkpoint).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

STUDENT_LABELS = {"untrained": "untrained", "kd": "KD", "kd_rl": "KD+RL",
                  "rl_quality": "KD+RL (quality rewards only)", "rl_answer": "KD+RL (answer F1 only)",
                  "kd_dataset": "KD from dataset rationales"}
# Ablation variant -> student name ("both" is the main KD+RL student).
VARIANT_STUDENT = {"both": "kd_rl", "quality": "rl_quality", "answer": "rl_answer"}
# experiment.rationale_forms: an untrained and a KD student per extra form, named <student>_<form>.
FORM_STUDENTS = ("untrained", "kd")
FORMS = ("full", "evidence")


def extra_forms(exp, main_form: str = "full") -> list[str]:
    """The rationale forms run beside ``kd.rationale_form`` (``main_form``), in config order."""
    return [f for f in dict.fromkeys(getattr(exp, "rationale_forms", None) or []) if f != main_form]


def student_form(student: str, main_form: str = "full") -> str:
    """The rationale form a student writes: its name's form suffix, else ``kd.rationale_form``."""
    for form in FORMS:
        if student.endswith(f"_{form}") and student.removesuffix(f"_{form}") in FORM_STUDENTS:
            return form
    return main_form


def student_label(student: str) -> str:
    """``STUDENT_LABELS`` for every student, those of an extra rationale form included."""
    for form in FORMS:
        base = student.removesuffix(f"_{form}")
        if base != student and base in FORM_STUDENTS:
            return f"{STUDENT_LABELS[base]}, {form} form"
    return STUDENT_LABELS[student]


@dataclass(frozen=True)
class MethodSpec:
    name: str
    label: str
    kind: str             # standard | cot | cot_sc | guided
    group: str            # baseline | guided | ablation | quality
    student: str | None = None
    k: int = 1
    select: str = "vote"

    def to_dict(self) -> dict:
        return asdict(self)


def students_needed(exp, dataset_rationales: bool = False, main_form: str = "full") -> list[str]:
    """Small LMs to build, in training order (KD before every RL variant; then the extra rationale
    forms'). ``dataset_rationales``: the training data has rationales of its own and KD learns from the
    teacher's, so a student distilled from the dataset's rationales is added beside it. ``main_form``:
    ``kd.rationale_form`` (``experiment.rationale_forms`` adds students of the other forms)."""
    need = list(exp.students) + (["kd_dataset"] if dataset_rationales else [])
    need += [VARIANT_STUDENT[v] for v in exp.rl_ablation]
    if exp.quality_analysis:
        need.append(exp.quality_student)
    if any(s in need for s in ("kd_rl", "rl_quality", "rl_answer")):
        need.append("kd")
    order = ["untrained", "kd", "kd_dataset", "kd_rl", "rl_quality", "rl_answer"]
    return [s for s in order if s in need] + [f"{s}_{form}" for form in extra_forms(exp, main_form)
                                              for s in FORM_STUDENTS]


def method_grid(exp, dataset_rationales: bool = False, main_form: str = "full") -> list[MethodSpec]:
    k = exp.num_samples
    rows: list[MethodSpec] = []
    for b in exp.baselines:
        if b == "standard":
            rows.append(MethodSpec("standard", "Standard prompting", "standard", "baseline"))
        elif b == "cot":
            rows.append(MethodSpec("cot", "CoT prompting", "cot", "baseline"))
        else:
            rows.append(MethodSpec("cot_sc", f"CoT prompting + SC (k={k})", "cot_sc", "baseline", k=k))
    for s in exp.students:
        rows.append(MethodSpec(f"guided_{s}", f"LM-guided CoT, {STUDENT_LABELS[s]}", "guided", "guided", s))
        if exp.self_consistency:
            rows.append(MethodSpec(f"guided_{s}_sc", f"LM-guided CoT, {STUDENT_LABELS[s]} + SC (k={k})", "guided",
                                   "guided", s, k=k))
    if dataset_rationales:
        rows.append(MethodSpec("guided_kd_dataset", f"LM-guided CoT, {STUDENT_LABELS['kd_dataset']}", "guided",
                               "guided", "kd_dataset"))
    for v in exp.rl_ablation:
        student = VARIANT_STUDENT[v]
        if student == "kd_rl" and "kd_rl" in exp.students:
            continue  # the main KD+RL row is the ablation's "both" row; not run twice
        rows.append(MethodSpec(f"guided_{student}", f"LM-guided CoT, {STUDENT_LABELS[student]}", "guided",
                               "ablation", student))
    for form in extra_forms(exp, main_form):  # greedy rows only: each form's untrained and KD student
        for base in FORM_STUDENTS:
            student = f"{base}_{form}"
            rows.append(MethodSpec(f"guided_{student}", f"LM-guided CoT, {student_label(student)}", "guided",
                                   "guided", student))
    if exp.quality_analysis:
        s = exp.quality_student
        if not (exp.self_consistency and s in exp.students):
            # The analysis reads the k sampled rationales and their answers of this row.
            rows.append(MethodSpec(f"guided_{s}_sc", f"LM-guided CoT, {STUDENT_LABELS[s]} + SC (k={k})", "guided",
                                   "quality", s, k=k))
        rows.append(MethodSpec(f"guided_{s}_quality", f"LM-guided CoT, {STUDENT_LABELS[s]}, top-quality of k={k}",
                               "guided", "quality", s, k=k, select="quality"))
    return rows

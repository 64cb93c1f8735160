"""The report's figures, drawn with matplotlib (Agg: no display needed) from ``tables.summary``.

    em_f1.png           EM and F1 per method with 95% bootstrap intervals
    aspects_rl.png      the eight aspects per student (before / after RL, ablation)
    quality_threshold.png  accuracy of questions whose best rationale clears a threshold (and how many)
    cost_accuracy.png   cost per correct answer against EM ($ where litellm has prices, else tokens)
    training_kd.png     the KD loss per step (of the KD student, which every RL student starts from)
    training_<student>.png  an RL student's loss and each reward's mean per step
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lmcot.aspects import ASPECTS
from lmcot.experiment.tables import STUDENT_LABELS


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _plt().close(fig)
    return path


def em_f1(ms: dict[str, Any], path: Path) -> Path:
    import numpy as np

    plt = _plt()
    names = list(ms)
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(names) + 2), 4.2))
    for offset, metric, color in ((-0.2, "em", "#4477aa"), (0.2, "f1", "#ee6677")):
        vals = [ms[n][metric] for n in names]
        lo = [max(0.0, ms[n][metric] - ms[n][f"{metric}_ci"][0]) for n in names]
        hi = [max(0.0, ms[n][f"{metric}_ci"][1] - ms[n][metric]) for n in names]
        bars = ax.bar(x + offset, vals, 0.4, yerr=[lo, hi], capsize=3, label=metric.upper(), color=color)
        for bar, n in zip(bars, names):
            if ms[n].get("scripted"):  # set by a stand-in's script: hatched, and "[scripted]" in the label
                bar.set_hatch("//")
                bar.set_alpha(0.45)
    ax.set_xticks(x, [ms[n]["label"] for n in names], rotation=35, ha="right", fontsize=7)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("dev score (95% bootstrap CI)")
    ax.legend()
    scripted = any(ms[n].get("scripted") for n in names)
    ax.set_title("Answer EM / F1 per method" + (" (hatched, [scripted]: set by the stand-in's script)" if scripted else ""),
                 fontsize=10 if scripted else None)
    return _save(fig, path)


def aspects(asp: dict[str, dict[str, float]], path: Path) -> Path:
    import numpy as np

    plt = _plt()
    students = list(asp)
    x = np.arange(len(ASPECTS))
    width = 0.8 / max(1, len(students))
    fig, ax = plt.subplots(figsize=(8, 4))
    for i, st in enumerate(students):
        # n/a aspects (None: no passage to judge against) draw no bar
        ax.bar(x - 0.4 + width * (i + 0.5), [float("nan") if asp[st][a] is None else asp[st][a] for a in ASPECTS],
               width, label=STUDENT_LABELS[st])
    ax.set_xticks(x, ASPECTS, rotation=30, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("mean score (0-1)")
    ax.set_title("Rationale quality per aspect, before / after RL")
    ax.legend(fontsize=8)
    return _save(fig, path)


def quality_threshold(rows: list[dict[str, Any]], path: Path) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    ts = [r["threshold"] for r in rows]
    ax.plot(ts, [r["em"] if r["em"] is not None else float("nan") for r in rows], "o-", color="#4477aa",
            label="EM of best-rationale answer")
    ax.set_xlabel("threshold on the best rationale's mean aspect score")
    ax.set_ylabel("EM")
    ax.set_ylim(-0.05, 1.05)
    ax2 = ax.twinx()
    ax2.bar(ts, [r["n"] for r in rows], width=0.6 * (ts[1] - ts[0]) if len(ts) > 1 else 0.05, alpha=0.25,
            color="#999999", label="questions above threshold")
    ax2.set_ylabel("questions")
    lines = ax.get_legend_handles_labels()
    bars = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + bars[0], lines[1] + bars[1], fontsize=8, loc="lower left")
    ax.set_title("Does higher rationale quality mean better answers?")
    return _save(fig, path)


def cost_accuracy(ms: dict[str, Any], path: Path) -> Path:
    plt = _plt()
    dollars = all(m["usd_per_correct"] is not None for m in ms.values() if m["correct"])
    key, label = (("usd_per_correct", "$ per correct answer") if dollars
                  else ("tokens_per_correct", "large-LM tokens per correct answer (no $ price known)"))
    fig, ax = plt.subplots(figsize=(9, 4.2))
    markers = "osD^vP*Xh<>p"
    for i, (name, m) in enumerate(ms.items()):
        if m[key] is None:
            continue
        # A legend, not annotations: methods of equal accuracy and cost would print over each other.
        ax.scatter(m[key], m["em"], s=45, marker=markers[i % len(markers)], label=m["label"], alpha=0.85)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    ax.set_xlabel(label)
    ax.set_ylabel("EM")
    ax.set_title("Cost per correct answer vs accuracy")
    return _save(fig, path)


def training_curves(training: dict[str, Any], folder: Path) -> list[Path]:
    """The KD loss once (every RL student starts from that KD run), then each RL student's curves."""
    from lmcot.curves import draw_curves

    paths: list[Path] = []
    kd = next((r["kd"] for r in training.values() if r.get("kd")), None)
    if kd and kd.get("curve"):
        paths.append(draw_curves({k: [tuple(p) for p in v] for k, v in kd["curve"].items()},
                                 folder / "training_kd.png", "KD: distillation loss"))
    for student, record in training.items():
        rl = record.get("rl")
        if rl and rl.get("curve"):
            title = f"RL, {STUDENT_LABELS[student]}: {rl.get('rewards') or 'rewards'}"
            paths.append(draw_curves({k: [tuple(p) for p in v] for k, v in rl["curve"].items()},
                                     folder / f"training_{student}.png", title))
    return [p for p in paths if p is not None]


def draw_all(s: dict[str, Any], folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = [em_f1(s["methods"], folder / "em_f1.png"), cost_accuracy(s["methods"], folder / "cost_accuracy.png")]
    if s["aspects"]:
        paths.append(aspects(s["aspects"], folder / "aspects_rl.png"))
    if s["quality"]:
        paths.append(quality_threshold(s["quality"]["thresholds"], folder / "quality_threshold.png"))
    paths += training_curves(s.get("training") or {}, folder)
    return paths

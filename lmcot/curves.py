"""Training curves: what a stage's ``train_log.json`` (the Trainer's ``log_history``, or the seq2seq RL
loop's log, same keys) says per step, and its figure (matplotlib, Agg: no display needed).

    series = curve_series(json.load(open("runs/q/rl/train_log.json")))
    # {"loss": [(1, 0.02), ...], "reward": [...], "rewards/factuality/mean": [...], ...}
    draw_curves(series, "runs/q/plots/rl_curves.png", "RL")

The compiler draws ``OUT/plots/kd_curves.png`` and ``OUT/plots/rl_curves.png`` after each stage; the
experiment keeps each student's series in ``results.json`` and draws them into its report.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

# The end-of-training summary entry (train_runtime, train_loss) is not a step's log.
_SUMMARY_KEY = "train_runtime"
LOSS, REWARD = "loss", "reward"


def _is_reward_mean(key: str) -> bool:
    return key.startswith("rewards/") and key.endswith("/mean")


def curve_series(log_history: list[dict[str, Any]]) -> dict[str, list[tuple[float, float]]]:
    """``{key: [(step, value), ...]}`` for the loss, the total reward and each reward's mean per
    logged step. A run shorter than ``logging_steps`` logs no step: its loss is then the summary's
    ``train_loss`` at the last step, so even a two-step run has a point to draw."""
    series: dict[str, list[tuple[float, float]]] = {}
    summary = None
    for entry in log_history:
        if _SUMMARY_KEY in entry:
            summary = entry
            continue
        step = entry.get("step")
        if step is None:
            continue
        for key, value in entry.items():
            if (key in (LOSS, REWARD) or _is_reward_mean(key)) and isinstance(value, (int, float)):
                series.setdefault(key, []).append((float(step), float(value)))
    if LOSS not in series and summary is not None and isinstance(summary.get("train_loss"), (int, float)):
        series[LOSS] = [(float(summary.get("step") or 0), float(summary["train_loss"]))]
    return series


def tokens_trained(log_history: list[dict[str, Any]]) -> int | None:
    """Tokens the trainer processed (TRL logs ``num_tokens`` cumulatively; transformers
    ``num_input_tokens_seen`` when asked), or None when the log holds neither."""
    for entry in reversed(log_history):
        for key in ("num_tokens", "num_input_tokens_seen"):
            if isinstance(entry.get(key), (int, float)):
                return int(entry[key])
    return None


def draw_curves(series: dict[str, list[tuple[float, float]]], path: str | Path, title: str) -> Path | None:
    """The loss (left) and, when logged, the total reward and each reward's mean (right), per step.
    Returns the PNG's path, or None when the log holds no curve at all."""
    if not series:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    rewards = {k: v for k, v in series.items() if k == REWARD or _is_reward_mean(k)}
    panels = [p for p in ((LOSS, {LOSS: series[LOSS]} if LOSS in series else {}), (REWARD, rewards)) if p[1]]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 3.8), squeeze=False)
    for ax, (name, curves) in zip(axes[0], panels):
        handles = []
        for key, points in sorted(curves.items()):
            steps, values = zip(*points)
            style = "o-" if len(points) < 30 else "-"
            if key == REWARD:
                # The weighted total sits on its own scale (a sum of weights x rewards); the parts are 0-1.
                twin = ax.twinx() if len(curves) > 1 else ax
                handles += twin.plot(steps, values, style, color="black", markersize=3, linewidth=2.2,
                                     label="total (weighted, right axis)" if twin is not ax else "total (weighted)")
                twin.set_ylabel("weighted total reward")
            else:
                label = key.removeprefix("rewards/").removesuffix("/mean")
                handles += ax.plot(steps, values, style, markersize=3, linewidth=1.2, label=label)
        ax.set_xlabel("step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("training loss" if name == LOSS else "mean reward per step (0-1)")
        if name == REWARD:
            ax.legend(handles=handles, fontsize=7, loc="best")
    fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

"""The experiment report rendered from a hand-made results.json (no model, no LM): the one-off
training cost and the cost per correct answer including it, p-values written as papers write
them, the note when the two tests disagree, and the training curves in the plots and the page."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

LABELS = {"cot": "CoT prompting", "guided_kd": "LM-guided CoT, KD", "guided_kd_rl": "LM-guided CoT, KD+RL"}
STUDENTS = {"cot": None, "guided_kd": "kd", "guided_kd_rl": "kd_rl"}


def _usage(calls: int, prompt: int, completion: int, cost: float | None, small_s: float = 0.0) -> dict:
    return {"model": "openai/gpt-4o-mini", "calls": calls, "cached_calls": 0, "estimated_calls": 0,
            "prompt_tokens": prompt, "completion_tokens": completion, "cached_tokens": 0, "cost_usd": cost,
            "paid_cost_usd": cost, "small_lm_seconds": small_s, "small_lm_untimed_calls": 0, "scoring_seconds": 0.0,
            "seconds": 1.0, "small_lm": None}


def _training() -> dict:
    kd = {"train_seconds": 120.0, "tokens_trained": 40960, "steps": 30,
          "curve": {"loss": [[10, 2.1], [20, 1.4], [30, 1.1]]},
          "teacher": {"calls": 64, "prompt_tokens": 30000, "completion_tokens": 6000, "cost_usd": 0.05,
                      "seconds": 40.0, "kept": 28}}
    rl = {"train_seconds": 300.0, "tokens_trained": 9000, "steps": 4, "rewards": "rationale quality + answer F1",
          "curve": {"loss": [[1, 0.01], [2, 0.02], [3, -0.01], [4, 0.0]], "reward": [[1, 4.1], [2, 4.6], [3, 4.4], [4, 5.0]],
                    "rewards/factuality/mean": [[1, 0.4], [2, 0.5], [3, 0.45], [4, 0.6]],
                    "rewards/answer_f1/mean": [[1, 0.2], [2, 0.3], [3, 0.3], [4, 0.5]]},
          "reward_calls": {"calls": 32, "cached_calls": 0, "prompt_tokens": 16000, "completion_tokens": 800,
                           "cost_usd": 0.01, "scope": "all"}}
    return {"kd": {"kd": kd}, "kd_rl": {"kd": kd, "rl": rl}}


def _results(right: dict[str, list[int]], usage: dict[str, dict], amortize_over: int = 100,
             training: dict | None = None) -> dict:
    n = len(next(iter(right.values())))
    ids = [f"q{i}" for i in range(n)]
    methods = {}
    for name, flags in right.items():
        rows = [{"id": i, "em": float(r), "f1": float(r), "gold": "a", "answer": "a" if r else "b"}
                for i, r in zip(ids, flags)]
        methods[name] = {"name": name, "label": LABELS[name], "kind": "cot" if name == "cot" else "guided",
                         "group": "baseline" if name == "cot" else "guided", "student": STUDENTS[name], "k": 1,
                         "select": "vote", "rows": rows, "usage": usage[name]}
    return {"format": "lmcot-experiment/1",
            "config": {"experiment": {"rl_ablation": [], "num_samples": 2, "sample_temperature": 0.7,
                                      "amortize_over": amortize_over, "stand_in_note": None}},
            "dev": {"dataset": "hotpotqa", "source": "dev.json", "n": n, "ids": ids},
            "large_lm": "openai/gpt-4o-mini", "small_lm": "tiny", "methods": methods, "aspects": {},
            "quality": None, "training": training if training is not None else _training(),
            "rendering": {"bootstrap_samples": 1000, "seed": 0}}


def _render(tmp_path: Path, results: dict) -> tuple[str, dict]:
    from lmcot.experiment.report import render

    (tmp_path / "results.json").write_text(json.dumps(results))
    render(tmp_path)
    return (tmp_path / "report.md").read_text(), json.loads((tmp_path / "tables.json").read_text())


def _rows(tables: dict, key: str) -> dict[str, list[str]]:
    return {r[0]: r for r in tables[key]["rows"]}


USAGE = {"cot": _usage(10, 5000, 1000, 0.0015), "guided_kd": _usage(10, 4000, 100, 0.0007, small_s=20.0),
         "guided_kd_rl": _usage(10, 4100, 90, 0.0008, small_s=21.0)}


def test_the_one_off_training_cost_and_the_cost_per_correct_answer_including_it(tmp_path):
    right = {"cot": [1, 1, 0, 0, 0, 0, 0, 0, 0, 0], "guided_kd": [1] * 5 + [0] * 5, "guided_kd_rl": [1] * 6 + [0] * 4}
    md, tables = _render(tmp_path, _results(right, USAGE, amortize_over=100))
    stages = _rows(tables, "training")
    assert stages["teacher rationales for KD (28 kept)"][1:6] == ["64", "30000", "6000", "0.0500", "40.0"]
    assert stages["KD: distillation (30 steps)"][5:] == ["120.0", "40960"]
    assert stages["RL: rationale quality + answer F1 (4 steps)"][1:] == ["32", "16000", "800", "0.0100", "300.0", "9000"]

    title = tables["amortised"]["title"]
    assert "amortised over 100 questions" in title and "experiment.amortize_over" in title
    per = _rows(tables, "amortised")
    n, over = 10, 100
    # KD student: teacher + KD; KD+RL student: teacher + KD + its RL; CoT: nothing to amortise.
    kd = per[LABELS["guided_kd"]]
    assert kd[2:5] == ["0.0500", "36000", "120.0"]
    assert kd[5] == f"{0.0007 / 5:.5f}"
    assert kd[6] == f"{(0.0007 + 0.05 * n / over) / 5:.5f}"
    assert kd[7] == f"{(4100 + 36000 * n / over) / 5:.0f}"
    assert kd[8] == f"{(20.0 + 120.0 * n / over) / 5:.2f}"
    rl = per[LABELS["guided_kd_rl"]]
    assert rl[2:5] == ["0.0600", "52800", "420.0"]
    assert rl[6] == f"{(0.0008 + 0.06 * n / over) / 6:.5f}"
    cot = per[LABELS["cot"]]
    assert cot[2:5] == ["-", "-", "-"] and cot[6] == cot[5] == f"{0.0015 / 2:.5f}"
    assert "### One-off cost of training the students" in md and "### Cost per correct answer including training" in md


def test_an_unpriced_model_leaves_dollars_unknown_but_tokens_and_seconds_counted(tmp_path):
    training = _training()
    training["kd_rl"]["rl"]["reward_calls"]["cost_usd"] = None
    usage = {k: {**u, "cost_usd": None} for k, u in USAGE.items()}
    right = {"cot": [1] + [0] * 9, "guided_kd": [1] * 5 + [0] * 5, "guided_kd_rl": [1] * 6 + [0] * 4}
    _, tables = _render(tmp_path, _results(right, usage, training=training))
    rl = _rows(tables, "amortised")[LABELS["guided_kd_rl"]]
    assert rl[2] == "n/a" and rl[6] == "n/a" and rl[7] != "n/a" and rl[8] != "n/a"


def test_p_values_below_one_in_a_thousand_are_written_as_such(tmp_path):
    from lmcot.experiment.stats import mcnemar_exact, paired_bootstrap

    right = {"cot": [0] * 30, "guided_kd": [1] * 15 + [0] * 15, "guided_kd_rl": [1] * 15 + [0] * 15}
    usage = {k: USAGE[k] for k in right}
    md, tables = _render(tmp_path, _results(right, usage))
    row = _rows(tables, "significance")[f"{LABELS['guided_kd']} vs {LABELS['cot']}"]
    a, b = [float(x) for x in right["guided_kd"]], [0.0] * 30
    assert paired_bootstrap(a, b, 1000, 0)["p"] < 0.001 and mcnemar_exact(a, b)["p"] < 0.001
    assert row[4] == "< 0.001" and row[7] == "< 0.001" and row[9] == "< 0.001"
    for r in tables["significance"]["rows"]:  # no p-value cell reads 0.000
        assert all(c == "< 0.001" or float(c) >= 0.001 for c in (r[4], r[7], r[9])), r
    assert "| < 0.001 |" in md
    assert "disagree" not in md


def test_the_report_says_when_bootstrap_and_mcnemar_disagree_at_small_n(tmp_path):
    """n=10, five questions only the guided row gets right: the paired bootstrap calls it
    significant, the exact McNemar test (p = 2/32) does not; the report says which to trust."""
    right = {"cot": [0] * 10, "guided_kd": [1] * 5 + [0] * 5, "guided_kd_rl": [1] * 5 + [0] * 5}
    md, tables = _render(tmp_path, _results(right, {k: USAGE[k] for k in right}))
    row = _rows(tables, "significance")[f"{LABELS['guided_kd']} vs {LABELS['cot']}"]
    assert float(row[7]) == pytest.approx(0.0625, abs=1e-3) and (row[4] == "< 0.001" or float(row[4]) < 0.05)
    note = md.split("### Significance", 1)[1].split("\n### ", 1)[0]
    assert f"{LABELS['guided_kd']} vs {LABELS['cot']}: the paired bootstrap (p " in note
    assert "exact McNemar test (p = 0.062) disagree at n=10 (5 questions on which only one of the two is right)" in note
    assert "the exact test is the one to trust here" in note
    # The comparison the two tests agree on (KD+RL vs KD: identical rows) gets no such sentence.
    assert f"{LABELS['guided_kd_rl']} vs {LABELS['guided_kd']}: the paired" not in note


def test_training_curves_are_drawn_into_the_plots_and_the_page(tmp_path):
    import matplotlib.image as mpimg
    import numpy as np

    right = {"cot": [1] + [0] * 9, "guided_kd": [1] * 5 + [0] * 5, "guided_kd_rl": [1] * 6 + [0] * 4}
    md, _ = _render(tmp_path, _results(right, USAGE))
    for name in ("training_kd.png", "training_kd_rl.png"):
        img = mpimg.imread(tmp_path / "plots" / name)
        assert img.shape[0] > 100 and float(np.std(img[..., :3])) > 0.02, name
        assert f"](plots/{name})" in md
    # RL's figure has two panels (loss; total reward and each reward's mean): wider than KD's one.
    assert mpimg.imread(tmp_path / "plots" / "training_kd_rl.png").shape[1] > \
        1.5 * mpimg.imread(tmp_path / "plots" / "training_kd.png").shape[1]
    page = (tmp_path / "report.html").read_text()
    pngs = sorted(p.name for p in (tmp_path / "plots").glob("*.png"))
    assert page.count("data:image/png;base64,") == len(pngs)
    assert "Training curves: RL of the KD+RL student" in page and "Training curve: KD loss per step" in page


def test_curve_series_reads_trainer_logs_and_tokens_trained():
    from lmcot.curves import curve_series, tokens_trained

    log = [{"loss": 2.0, "grad_norm": 1.0, "num_tokens": 100.0, "step": 1},
           {"loss": 1.5, "reward": 3.0, "rewards/factuality/mean": 0.5, "rewards/factuality/std": 0.1,
            "num_tokens": 220.0, "step": 2},
           {"train_runtime": 3.0, "train_loss": 1.75, "step": 2}]
    series = curve_series(log)
    assert series == {"loss": [(1.0, 2.0), (2.0, 1.5)], "reward": [(2.0, 3.0)],
                      "rewards/factuality/mean": [(2.0, 0.5)]}
    assert tokens_trained(log) == 220
    # A run shorter than logging_steps logs only its summary: its mean loss is the one point.
    assert curve_series([{"train_runtime": 1.0, "train_loss": 6.7, "num_tokens": 2483.0, "step": 2}]) == {
        "loss": [(2.0, 6.7)]}
    assert tokens_trained([{"loss": 1.0, "step": 1}]) is None

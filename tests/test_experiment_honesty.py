"""What the experiment report says about its own numbers (issue 15), from a hand-made results.json (no
LM, no model): the answer-leak table, RL rows that changed nothing, rows set by the stand-in's script,
and the rationale-form comparisons."""

from __future__ import annotations

import json

import pytest

from lmcot.metrics.answer_leak import answer_leak, changed_predictions

GOLD = "Vienna"


def _row(i: int, rationale: str, answer: str, gold: str = GOLD, **more) -> dict:
    from lmcot.metrics import answer_em, answer_f1

    return {"id": f"q{i}", "question": f"Q{i}?", "gold": gold, "answer": answer, "rationale": rationale,
            "em": answer_em(answer, gold), "f1": answer_f1(answer, gold), "error": None, **more}


def test_answer_leak_splits_by_what_the_rationale_states():
    rows = [_row(0, "Keller studied in Vienna. So the answer is Vienna.", "Vienna"),   # stated right, followed
            _row(1, "Keller studied in Vienna. So the answer is Graz.", "Graz"),       # stated wrong, followed
            _row(2, "Keller studied in Vienna. So the answer is Graz.", "Vienna"),     # stated wrong, not followed
            _row(3, "Keller studied in Vienna.", "Vienna"),                            # none stated
            _row(4, "Keller was born.", "Paris")]                                      # none stated
    leak = answer_leak(rows)
    assert leak["rationales"] == 5 and leak["stated"] == 3
    assert leak["stated_share"] == pytest.approx(3 / 5)
    assert leak["stated_accuracy"] == pytest.approx(1 / 3)
    assert leak["reader_follows"] == pytest.approx(2 / 3)
    assert leak["em_by_stated"] == {"stated_right": {"n": 1, "em": 1.0}, "stated_wrong": {"n": 2, "em": 0.5},
                                    "none": {"n": 2, "em": 0.5}}
    # A self-consistency row counts each of its k (rationale, answer) pairs.
    sc = _row(5, "x", "Vienna", rationales=["So the answer is Vienna.", "none here"], answers=["Vienna", "Graz"])
    assert answer_leak([sc])["rationales"] == 2 and answer_leak([sc])["stated"] == 1
    assert answer_leak([])["stated_share"] is None


def test_changed_predictions_counts_per_question():
    before = [_row(0, "a", "Vienna"), _row(1, "b", "Graz"), _row(2, "c", "Paris")]
    after = [_row(0, "a", "Vienna"), _row(1, "b2", "graz"), _row(2, "c2", "Vienna")]
    assert changed_predictions(before, after) == {"questions": 3, "rationales_changed": 2, "answers_changed": 1,
                                                  "scores_changed": 1}
    # A number task compares values: "$18" is "18"; two answers without a number compare as texts.
    before = [_row(0, "a", "18"), _row(1, "b", "I do not know"), _row(2, "c", "7")]
    after = [_row(0, "a", "$18.00"), _row(1, "b", "no idea"), _row(2, "c", "8")]
    assert changed_predictions(before, after, "number")["answers_changed"] == 2
    assert changed_predictions(before, after)["answers_changed"] == 3


def _method(name, label, kind, group, rows, student=None, k=1):
    usage = {"calls": len(rows), "cached_calls": 0, "prompt_tokens": 10, "completion_tokens": 2, "cost_usd": None,
             "small_lm_seconds": 0.0, "seconds": 0.1, "small_lm": None}
    return {"name": name, "label": label, "kind": kind, "group": group, "student": student, "k": k,
            "select": "vote", "rows": rows, "usage": usage}


@pytest.fixture()
def results_dir(tmp_path):
    n = 6
    kd = [_row(i, f"Evidence {i}. So the answer is {'Vienna' if i < 2 else 'Graz'}.", "Vienna" if i < 2 else "Graz")
          for i in range(n)]
    untrained = [_row(i, f"Nothing {i}.", "Paris") for i in range(n)]
    evidence_kd = [_row(i, f"Keller studied in Vienna {i}.", "Vienna" if i < 5 else "Paris") for i in range(n)]
    moved = [dict(r) for r in kd]
    moved[3] = _row(3, "Evidence 3. So the answer is Vienna.", "Vienna")
    methods = {
        "standard": _method("standard", "Standard prompting", "standard", "baseline",
                            [dict(_row(i, "", "Vienna"), rationale=None) for i in range(n)]),
        "guided_untrained": _method("guided_untrained", "LM-guided CoT, untrained", "guided", "guided", untrained, "untrained"),
        "guided_kd": _method("guided_kd", "LM-guided CoT, KD", "guided", "guided", kd, "kd"),
        "guided_kd_rl": _method("guided_kd_rl", "LM-guided CoT, KD+RL", "guided", "guided", [dict(r) for r in kd], "kd_rl"),
        "guided_rl_answer": _method("guided_rl_answer", "LM-guided CoT, KD+RL (answer F1 only)", "guided", "ablation",
                                    moved, "rl_answer"),
        "guided_untrained_evidence": _method("guided_untrained_evidence", "LM-guided CoT, untrained, evidence form",
                                             "guided", "guided", untrained, "untrained_evidence"),
        "guided_kd_evidence": _method("guided_kd_evidence", "LM-guided CoT, KD, evidence form", "guided", "guided",
                                      evidence_kd, "kd_evidence"),
    }
    config = {"experiment": {"num_samples": 2, "sample_temperature": 0.7, "rl_ablation": ["both", "answer"],
                             "scripted_methods": ["standard"], "rationale_forms": ["evidence"]}}
    results = {"format": "lmcot-experiment/1", "config": config,
               "dev": {"dataset": "hotpotqa", "source": "dev.json", "n": n, "ids": [f"q{i}" for i in range(n)]},
               "large_lm": "openai/oracle-follow", "small_lm": "s", "methods": methods, "aspects": {}, "quality": None,
               "rendering": {"bootstrap_samples": 200, "seed": 0}}
    (tmp_path / "results.json").write_text(json.dumps(results))
    return tmp_path


def _table(md: str, title_start: str) -> list[list[str]]:
    block = md.split(f"### {title_start}", 1)[1].split("\n### ", 1)[0].split("\n## ", 1)[0]
    lines = [ln for ln in block.splitlines() if ln.startswith("|")]
    return [[c.strip() for c in ln.strip("|").split(" | ")] for ln in lines[2:]]


def test_report_has_the_leak_table_the_marks_and_the_form_comparisons(results_dir):
    from lmcot.experiment.report import render

    render(results_dir)
    md = (results_dir / "report.md").read_text()
    main = {r[0]: r for r in _table(md, "Methods on")}
    assert "Standard prompting [scripted]" in main
    assert "LM-guided CoT, KD+RL [no measurable change from KD]" in main
    assert "LM-guided CoT, KD" in main and "LM-guided CoT, KD, evidence form" in main

    leak = {r[0]: r for r in _table(md, "Answer leakage")}
    assert "Standard prompting [scripted]" not in leak  # only guided rows
    kd = leak["LM-guided CoT, KD"]
    # 6 rationales, all state an answer, 2 of them right, the reader follows every one
    assert kd[1:5] == ["6", "1.00", "0.33", "1.00"]
    assert kd[5:8] == ["1.00 (2)", "0.00 (4)", "n/a (0)"]
    ev = leak["LM-guided CoT, KD, evidence form"]
    assert ev[1:5] == ["6", "0.00", "n/a", "n/a"] and ev[7] == "0.83 (6)"
    assert "Hase et al., 2020" in md

    ablation = {r[0]: r for r in _table(md, "RL ablation")}
    assert ablation["quality + answer F1"][5].startswith("no measurable change: 0 of 6")
    assert ablation["answer F1 only"][5] == "1 of 6 rationales, 1 answers and 1 EM scores differ from KD"

    pairs = {r[0] for r in _table(md, "Significance")}
    assert "LM-guided CoT, KD vs LM-guided CoT, untrained" in pairs
    assert "LM-guided CoT, KD, evidence form vs LM-guided CoT, untrained, evidence form" in pairs
    assert "LM-guided CoT, KD, evidence form vs LM-guided CoT, KD" in pairs
    assert (results_dir / "plots" / "em_f1.png").is_file()
    tables = json.loads((results_dir / "tables.json").read_text())
    assert "answer_leak" in tables


def test_grid_adds_a_row_per_extra_rationale_form():
    from lmcot.config import ExperimentConfig
    from lmcot.experiment.grid import method_grid, student_form, student_label, students_needed

    exp = ExperimentConfig(students=["untrained", "kd"], rl_ablation=[], quality_analysis=False,
                           self_consistency=False, rationale_forms=["evidence", "full"])
    assert students_needed(exp) == ["untrained", "kd", "untrained_evidence", "kd_evidence"]
    assert [s.name for s in method_grid(exp) if s.kind == "guided"] == [
        "guided_untrained", "guided_kd", "guided_untrained_evidence", "guided_kd_evidence"]
    # With kd.rationale_form=evidence the main rows are evidence and the extra one is full.
    assert students_needed(exp, main_form="evidence") == ["untrained", "kd", "untrained_full", "kd_full"]
    assert student_form("kd_full", "evidence") == "full" and student_form("kd", "evidence") == "evidence"
    assert student_form("kd_rl", "full") == "full" and student_label("kd_evidence") == "KD, evidence form"

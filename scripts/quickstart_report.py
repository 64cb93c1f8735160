"""The quickstart's closing summary: one table of the five methods and a few rationales before/after.

    python scripts/quickstart_report.py runs/quickstart [--stand-in "<the stand-in's start-up line>"]

Reads what the run wrote (nothing here is computed from anything else): OUT/metrics.json (`lmcot
compile`: guided EM with the untrained student, after KD, after KD+RL), OUT/eval/metrics.json and
OUT/eval/predictions.jsonl (`lmcot evaluate --methods standard,cot`), and OUT/dev/*.jsonl (each
point's dev predictions: the per-question scores behind the intervals, and the rationales).

Intervals: EM 95% CI is a percentile bootstrap over the dev questions; "vs untrained" is the paired
bootstrap of the EM difference with the untrained student on the same questions, its 95% CI and a
two-sided p (lmcot.experiment.stats, as `lmcot experiment` reports them).
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from pathlib import Path

from lmcot.experiment.honesty import unchanged
from lmcot.experiment.stats import bootstrap_ci, paired_bootstrap
from lmcot.experiment.tables import p_text
from lmcot.metrics.answer_leak import answer_leak, changed_predictions
from lmcot.metrics.task_metric import TaskMetric

SAMPLES, SEED = 2000, 0


def _rows(path: Path) -> dict[str, dict]:
    if not path.is_file():
        return {}
    return {r["id"]: r for r in (json.loads(x) for x in path.read_text().splitlines() if x.strip())}


def _short(text: str, width: int = 220) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= width else text[: width - 3] + "..."


def _baseline_rows(out: Path) -> dict[str, dict[str, dict]]:
    """{method: {id: row}} of evaluate's predictions.jsonl (one line per example and method)."""
    by_method: dict[str, dict[str, dict]] = {}
    path = out / "eval" / "predictions.jsonl"
    if path.is_file():
        for line in path.read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                by_method.setdefault(r.get("method"), {})[r["id"]] = r
    return by_method


def _f(x: float | None, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", nargs="?", default="runs/quickstart")
    ap.add_argument("--stand-in", default=None, help="the stand-in large LM's start-up line (what it is, its rule)")
    args = ap.parse_args(argv)
    out = Path(args.out)
    compiled = json.loads((out / "metrics.json").read_text())
    baselines = json.loads((out / "eval" / "metrics.json").read_text()) if (out / "eval" / "metrics.json").is_file() else {}
    base_rows = _baseline_rows(out)
    config = json.loads((out / "program.json").read_text()).get("config", {}) if (out / "program.json").is_file() else {}
    answer_type = config.get("data", {}).get("answer_type", "span")
    labels = config.get("data", {}).get("labels")
    same = TaskMetric(answer_type, tuple(labels) if labels else None).same_answer  # stated vs gold, as the task compares
    dev = {name: _rows(out / "dev" / f"{name}.jsonl") for name in ("untrained", "before_RL", "compiled")}
    kd_only = compiled.get("stages") == ["kd"]
    after_kd = ("before_rl", "before_RL") if "before_rl" in compiled else (("compiled", "compiled") if kd_only else None)
    after_rl = ("compiled", "compiled") if "rl" in compiled.get("stages", []) else None
    table = [
        ("standard prompting (large LM alone)", baselines.get("standard"), base_rows.get("standard", {}), True),
        ("CoT prompting (large LM reasons)", baselines.get("cot"), base_rows.get("cot", {}), True),
        ("guided, untrained student", compiled.get("untrained"), dev["untrained"], False),
        ("guided, after KD", compiled.get(after_kd[0]) if after_kd else None, dev[after_kd[1]] if after_kd else {}, False),
        ("guided, after KD+RL", compiled.get(after_rl[0]) if after_rl else None, dev[after_rl[1]] if after_rl else {}, False),
    ]
    untrained = dev["untrained"]
    n_dev = compiled.get("untrained", {}).get("n", "?")
    print(f"\nquickstart results on {n_dev} dev questions (numbers from this run; the large LM is the SCRIPTED stand-in)")
    if args.stand_in:
        print(textwrap.fill(f"large LM: {args.stand_in}", 110, subsequent_indent="  "))
    # F1 only for spans (numbers and labels: F1 = EM); the evidence column only on a task with gold evidence.
    f1 = answer_type == "span"
    evidence = any(m and "evidence_stated" in m for _, m, _, _ in table)
    print(f"{'method':<48}{'EM':>6}{'95% CI':>15}{'vs untrained':>14}{'95% CI':>17}{'p':>8}"
          + (f"{'F1':>7}" if f1 else "") + (f"{'evid.':>7}" if evidence else "") + f"{'states':>7}{'right':>7}{'cut':>5}{'n':>5}")
    for name, m, rows, scripted in table:
        if not m:
            why = "  not run (stages: kd; --set stages=[kd,rl] adds RL)" if name.endswith("KD+RL") else ""
            print(f"{name:<48}{'-':>6}{why}")
            continue
        ems = [float(r["em"]) for r in rows.values()]
        lo, hi = bootstrap_ci(ems, SAMPLES, SEED) if ems else (None, None)
        ci = f"[{lo:.2f}, {hi:.2f}]" if ems else "-"
        delta = dci = p = "-"
        if not scripted and rows is not untrained and untrained:
            ids = [i for i in rows if i in untrained]
            pb = paired_bootstrap([float(rows[i]["em"]) for i in ids], [float(untrained[i]["em"]) for i in ids],
                                  SAMPLES, SEED)
            delta, dci, p = f"{pb['diff']:+.3f}", f"[{pb['ci_low']:+.2f}, {pb['ci_high']:+.2f}]", p_text(pb["p"])
        leak = answer_leak(rows.values(), same) if not scripted else None
        ev = _f(m.get("evidence_stated"), 2)
        states = _f(leak["stated_share"], 2) if leak else "-"
        right = _f(leak["stated_accuracy"], 2) if leak else "-"
        cut = str(m["rationales_cut"]) if "rationales_cut" in m else "-"
        label = f"{name} [scripted]" if scripted else name
        print(f"{label:<48}{m['em']:>6.3f}{ci:>15}{delta:>14}{dci:>17}{p:>8}" + (f"{m['f1']:>7.3f}" if f1 else "")
              + (f"{ev:>7}" if evidence else "") + f"{states:>7}{right:>7}{cut:>5}{m['n']:>5}")
    print("EM 95% CI: bootstrap over questions. vs untrained: EM difference with the untrained student on the same\n"
          "  questions, paired bootstrap 95% CI and two-sided p; a CI that excludes 0 is a difference beyond noise.")
    if answer_type != "span":
        print(f"EM: answers compared as {answer_type}s" + (" (numeric equality)" if answer_type == "number" else "") + ".")
    if evidence:
        print("evid. = share of the student's rationales stating a gold supporting sentence or the answer\n"
              "  (metrics/rationale/evidence.py).")
    print("states = share of rationales stating an answer ('So the answer is X'); right = of those, the share whose\n"
          "  stated answer is the gold. A reader that follows the rationale answers the stated X"
          + ("; with no stated answer\n  the stand-in answers right exactly when evid. holds.\n" if evidence else
             " (the stand-in: 'I don't know'\n  when none is stated).\n") +
          "cut = rationales stopped at small_lm.max_tokens instead of at EOS.\n"
          "[scripted]: standard / CoT rows are set by the stand-in's script (right on 35% / 45% of questions by a\n"
          "  hash of the question), not measured.")
    if after_rl and after_kd and after_kd[1] != after_rl[1] and dev[after_kd[1]]:
        change = changed_predictions(dev[after_kd[1]].values(), dev[after_rl[1]].values(), answer_type)
        if unchanged(change):
            print(f"RL: no measurable change: 0 of {change['questions']} dev rationales differ from after KD.")
        else:
            print(f"RL changed {change['rationales_changed']} of {change['questions']} dev rationales against after KD "
                  f"({change['answers_changed']} answers, {change['scores_changed']} EM scores).")
    before = untrained
    after = dev[after_kd[1]] if after_kd else {}
    shown = [i for i in before if i in after][:3]
    if shown:
        print("\nexample rationales of the student, before -> after KD (shortened):")
    for i in shown:
        b, a = before[i], after[i]
        print(f"\nQ: {b['question']}  (gold: {b['gold']})")
        print(textwrap.indent(f"before: {_short(b.get('rationale', ''))}  -> answer {b.get('answer')!r}", "  "))
        print(textwrap.indent(f"after:  {_short(a.get('rationale', ''))}  -> answer {a.get('answer')!r}", "  "))
    return 0


if __name__ == "__main__":
    sys.exit(main())

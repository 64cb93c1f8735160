"""The quickstarts' closing summary: one table of the methods and a few rationales before/after.

    python scripts/quickstart_report.py runs/quickstart

Reads what the run wrote (nothing here is computed from anything else): OUT/metrics.json (`lmcot
compile`: guided EM with the untrained student, after KD, after KD+RL), OUT/eval/metrics.json
(`lmcot evaluate --methods standard,cot`), and OUT/dev/*.jsonl (each point's dev rationales).
"""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path


def _rows(path: Path) -> dict[str, dict]:
    if not path.is_file():
        return {}
    return {r["id"]: r for r in (json.loads(x) for x in path.read_text().splitlines() if x.strip())}


def _short(text: str, width: int = 220) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= width else text[: width - 3] + "..."


def main(out: str) -> int:
    out = Path(out)
    compiled = json.loads((out / "metrics.json").read_text())
    baselines = json.loads((out / "eval" / "metrics.json").read_text()) if (out / "eval" / "metrics.json").is_file() else {}
    config = json.loads((out / "program.json").read_text()).get("config", {}) if (out / "program.json").is_file() else {}
    answer_type = config.get("data", {}).get("answer_type", "span")
    table = [
        ("standard prompting (large LM alone)", baselines.get("standard")),
        ("CoT prompting (large LM reasons)", baselines.get("cot")),
        ("guided, untrained student", compiled.get("untrained")),
        ("guided, after KD", compiled.get("before_rl") or (compiled.get("compiled") if compiled.get("stages") == ["kd"] else None)),
        ("guided, after KD+RL", compiled.get("compiled") if "rl" in compiled.get("stages", []) else None),
    ]
    if "rl" not in compiled.get("stages", []):
        table.pop()
    # A task with gold evidence (HotpotQA) shows how often rationales state it; any other task, how often
    # they state an answer (what the stand-in reader follows).
    evidence = any(m and "evidence_stated" in m for _, m in table)
    col, key = ("evidence", "evidence_stated") if evidence else ("stated", "answer_stated")
    f1 = answer_type == "span"
    print("\nquickstart results on the dev set (numbers from this run; the large LM is the SCRIPTED stand-in)")
    print(f"{'method':<38}{'EM':>7}" + (f"{'F1':>7}" if f1 else "") + f"{col:>10}{'cut':>5}{'n':>5}")
    for name, m in table:
        if not m:
            print(f"{name:<38}{'-':>7}")
            continue
        ev = f"{m[key]:.2f}" if key in m else "-"
        cut = str(m["rationales_cut"]) if "rationales_cut" in m else "-"
        print(f"{name:<38}{m['em']:>7.3f}" + (f"{m['f1']:>7.3f}" if f1 else "") + f"{ev:>10}{cut:>5}{m['n']:>5}")
    if evidence:
        print("evidence = share of the student's rationales stating a gold supporting sentence or the answer\n"
              "  (lmcot/metrics/rationale/evidence.py): the stand-in reader answers right exactly on those.")
    else:
        print(f"EM: answers compared as {answer_type}s" + (" (numeric equality; F1 = EM)" if answer_type == "number" else "")
              + ".\nstated = share of the student's rationales that state an answer (\"So the answer is X\"): the\n"
              "  stand-in reader answers that conclusion, so a guided answer is right only when it is the gold.")
    print("cut = rationales stopped at small_lm.max_tokens instead of at EOS.\n"
          "standard / CoT rows: the stand-in is scripted to be right on 35% / 45% of questions.")
    before, after = _rows(out / "dev" / "untrained.jsonl"), _rows(out / "dev" / "before_RL.jsonl")
    after = after or _rows(out / "dev" / "compiled.jsonl")
    shown = [i for i in before if i in after][:3]
    width = 220 if evidence else 400
    if shown:
        print("\nexample rationales of the student, before -> after KD (shortened):")
    for i in shown:
        b, a = before[i], after[i]
        print(f"\nQ: {b['question']}  (gold: {b['gold']})")
        print(textwrap.indent(f"before: {_short(b.get('rationale', ''), width)}  -> answer {b.get('answer')!r}", "  "))
        print(textwrap.indent(f"after:  {_short(a.get('rationale', ''), width)}  -> answer {a.get('answer')!r}", "  "))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "runs/quickstart"))

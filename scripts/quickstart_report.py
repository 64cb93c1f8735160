"""The quickstart's closing summary: one table of the five methods and a few rationales before/after.

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
    table = [
        ("standard prompting (large LM alone)", baselines.get("standard")),
        ("CoT prompting (large LM reasons)", baselines.get("cot")),
        ("guided, untrained student", compiled.get("untrained")),
        ("guided, after KD", compiled.get("before_rl") or (compiled.get("compiled") if compiled.get("stages") == ["kd"] else None)),
        ("guided, after KD+RL", compiled.get("compiled") if "rl" in compiled.get("stages", []) else None),
    ]
    print("\nquickstart results on the dev set (numbers from this run; the large LM is the SCRIPTED stand-in)")
    print(f"{'method':<38}{'EM':>7}{'F1':>7}{'evidence':>10}{'cut':>5}{'n':>5}")
    for name, m in table:
        if not m:
            print(f"{name:<38}{'-':>7}")
            continue
        ev = f"{m['evidence_stated']:.2f}" if "evidence_stated" in m else "-"
        cut = str(m["rationales_cut"]) if "rationales_cut" in m else "-"
        print(f"{name:<38}{m['em']:>7.3f}{m['f1']:>7.3f}{ev:>10}{cut:>5}{m['n']:>5}")
    print("evidence = share of the student's rationales stating a gold supporting sentence or the answer\n"
          "  (lmcot/metrics/rationale/evidence.py): the stand-in reader answers right exactly on those.\n"
          "cut = rationales stopped at small_lm.max_tokens instead of at EOS.\n"
          "standard / CoT rows: the stand-in is scripted to be right on 35% / 45% of questions.")
    before, after = _rows(out / "dev" / "untrained.jsonl"), _rows(out / "dev" / "before_RL.jsonl")
    after = after or _rows(out / "dev" / "compiled.jsonl")
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
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "runs/quickstart"))

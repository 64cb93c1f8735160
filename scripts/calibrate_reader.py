"""Calibrate the stand-in reader's rule against a real reader: does a reader answer what a rationale
*states*, or what its evidence supports?

    # SmolLM2-135M in-process as the reader (offline, CPU; ~3-6 min for 30 questions on 2 cores):
    python scripts/calibrate_reader.py --config configs/real_reader.yaml --n 30 --out runs/calibrate
    # any litellm reader (the large LM of a config, e.g. a GPU server or an API):
    python scripts/calibrate_reader.py --config configs/quickstart.yaml --n 40 --out runs/calibrate-4o \
        --set large_lm.model=openai/gpt-4o-mini --set large_lm.api_base=null --set large_lm.api_key_env=OPENAI_API_KEY
    # an in-process GPU reader:
    python scripts/calibrate_reader.py --config configs/real_reader.yaml --n 40 --out runs/calibrate-qwen7b \
        --set large_lm.model=Qwen/Qwen2.5-7B-Instruct --set large_lm.dtype=bfloat16

The reader is the config's ``large_lm`` (``large_lm.backend: transformers`` in-process, or any litellm
model string), asked exactly as LM-guided CoT asks it (``LMGuidedCoT.answer_from``: question, the
context as ``data.max_context_tokens`` cuts it, rationale). For each of the first ``--n`` questions of
``data.dev`` it reads three rationales built from the gold data:

* ``evidence+wrong``: the gold supporting sentences, then "So the answer is W" for a wrong W (a
  distractor paragraph's title; the opposite of a yes/no answer);
* ``evidence``: the gold supporting sentences alone, no conclusion;
* ``wrong``: "So the answer is W" alone.

It reports, per variant, the reader's EM against the gold and how often its answer equals the stated
W, and, for readers that answer in sentences rather than spans (a 135M model does), how often the
answer *mentions* the gold / W (its normalised tokens appear in a run in the answer; yes/no only as
the answer's first word). And how often each stand-in rule (tests/support/oracle_responder.py)
predicts the reader's correctness (by EM, and by mentions: right = mentions the gold and not W):
``follow`` says evidence+wrong -> wrong, evidence -> right, wrong -> wrong; ``lenient`` says
evidence+wrong -> right (the two rules differ only there). Writes OUT/answers.jsonl (every
answer) and OUT/calibration.json. Calls go through the config's disk cache (``cache_dir``): a rerun
asks nothing twice. A reply with no answer in it (an in-process reader's) counts as a wrong answer,
reported as ``failed``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

VARIANTS = ("evidence+wrong", "evidence", "wrong")
# What each stand-in rule predicts for each variant: is the reader right (answers the gold)?
RULE_PREDICTS = {"follow": {"evidence+wrong": False, "evidence": True, "wrong": False},
                 "lenient": {"evidence+wrong": True, "evidence": True, "wrong": False}}


def gold_sentences(ex) -> list[str]:
    sents = {t: s for t, s in ex.paragraphs}
    return [sents[t][i].strip() for t, i in ex.supporting_facts
            if t in sents and isinstance(i, int) and 0 <= i < len(sents[t]) and sents[t][i].strip()]


def wrong_answer(ex) -> str:
    """A plausible wrong answer, fixed per question: the opposite of yes/no, else a distractor's title."""
    from lmcot.metrics.answer import answer_em, normalize_answer

    gold = normalize_answer(ex.answer)
    if gold in ("yes", "no"):
        return "no" if gold == "yes" else "yes"
    support = {t for t, _ in ex.supporting_facts}
    titles = sorted(t for t, _ in ex.paragraphs if t not in support and not answer_em(t, ex.answer))
    if not titles:
        titles = sorted(t for t, _ in ex.paragraphs if not answer_em(t, ex.answer)) or ["Paris"]
    pick = int(hashlib.sha256(ex.question.encode()).hexdigest()[:8], 16)
    return titles[pick % len(titles)]


def rationales(ex) -> dict[str, str]:
    evidence, wrong = " ".join(gold_sentences(ex)), wrong_answer(ex)
    return {"evidence+wrong": f"{evidence} So the answer is {wrong}.", "evidence": evidence,
            "wrong": f"So the answer is {wrong}."}


def mentions(answer: str, span: str) -> float:
    """1.0 when ``answer`` mentions ``span`` (its normalised tokens in a run; yes/no: the first word)."""
    from lmcot.metrics.answer import normalize_answer
    from lmcot.metrics.rationale.evidence import states_answer

    if normalize_answer(span) in ("yes", "no"):
        return float(normalize_answer(answer).split()[:1] == [normalize_answer(span)])
    return float(states_answer(answer, span))


def _share(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def summarize(rows: list[dict]) -> dict:
    out = {}
    for v in VARIANTS:
        mine = [r for r in rows if r["variant"] == v]
        out[v] = {"n": len(mine), "em": _share([r["em"] for r in mine]),
                  "answers_stated": _share([r["answers_stated"] for r in mine]),
                  "mentions_gold": _share([r["mentions_gold"] for r in mine]),
                  "mentions_stated": _share([r["mentions_stated"] for r in mine]),
                  "failed": sum(1 for r in mine if r["error"])}
    for rule, predicts in RULE_PREDICTS.items():
        out[f"agreement_{rule}"] = _share([float(bool(r["em"]) == predicts[r["variant"]]) for r in rows])
        right = [bool(r["mentions_gold"]) and not r["mentions_stated"] for r in rows]
        out[f"agreement_{rule}_mentions"] = _share([float(k == predicts[r["variant"]]) for k, r in zip(right, rows)])
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=None, help="YAML config (default: lmcot's defaults + --set); its large_lm is the "
                    "reader, data.dev the questions")
    ap.add_argument("--n", type=int, default=30, help="dev questions (the first N)")
    ap.add_argument("--out", required=True, help="folder for answers.jsonl and calibration.json")
    ap.add_argument("--concurrency", type=int, default=10, help="answer calls in flight (an in-process reader batches them)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override, as in lmcot")
    args = ap.parse_args(argv)

    from lmcot.config import load_config
    from lmcot.lms import cache_in

    cfg = load_config(args.config, args.set)
    with cache_in(cfg.cache_dir):  # the reader's calls cached; DSPy's global cache as it was after
        return _calibrate(cfg, args)


def _calibrate(cfg, args) -> int:
    from lmcot.lms import build_lm
    from lmcot.metrics.answer import answer_em
    from lmcot.parallel import map_concurrently
    from lmcot.programs import LMGuidedCoT
    from lmcot.contexts import context_token_counter
    from lmcot.splits import load_split

    dev = load_split(cfg, "dev", limit=args.n, count_tokens=context_token_counter(cfg))
    reader = build_lm(cfg.large_lm)
    program = LMGuidedCoT(None, reader)
    jobs = [(ex, v, text, wrong_answer(ex)) for ex in dev for v, text in rationales(ex).items()]
    print(f"reader {cfg.large_lm.model} ({cfg.large_lm.backend}): {len(dev)} questions x {len(VARIANTS)} rationales",
          file=sys.stderr)
    start = time.monotonic()

    def ask(job) -> dict:
        ex, variant, text, wrong = job
        try:
            answer, error = str(program.answer_from(ex.question, ex.context, [text]).answer), None
        except Exception as exc:  # noqa: BLE001 - a reply with no answer: wrong, and counted as failed
            answer, error = "", f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
        return {"id": str(ex.id), "question": ex.question, "gold": ex.answer, "variant": variant, "rationale": text,
                "stated": wrong if variant != "evidence" else None, "answer": answer, "error": error,
                "em": answer_em(answer, ex.answer), "answers_stated": answer_em(answer, wrong),
                "mentions_gold": mentions(answer, ex.answer), "mentions_stated": mentions(answer, wrong)}

    rows = map_concurrently(ask, jobs, max(1, args.concurrency))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "answers.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    summary = {"reader": cfg.large_lm.model, "backend": cfg.large_lm.backend, "questions": len(dev),
               "dev": cfg.data.dev, "seconds": round(time.monotonic() - start, 1), **summarize(rows)}
    (out / "calibration.json").write_text(json.dumps(summary, indent=2) + "\n")

    print(f"\nreader {summary['reader']} on {len(dev)} dev questions ({summary['seconds']} s)")
    print(f"{'rationale':<16}{'n':>4}{'EM':>7}{'= W':>7}{'mentions gold':>15}{'mentions W':>12}{'failed':>8}"
          "   stand-in predicts (follow / lenient)")
    for v in VARIANTS:
        s = summary[v]
        pred = " / ".join("right" if RULE_PREDICTS[r][v] else "wrong" for r in RULE_PREDICTS)
        print(f"{v:<16}{s['n']:>4}{s['em']:>7.2f}{s['answers_stated']:>7.2f}{s['mentions_gold']:>15.2f}"
              f"{s['mentions_stated']:>12.2f}{s['failed']:>8}   {pred}")
    print(f"agreement of each rule with the reader's right/wrong: by EM follow {summary['agreement_follow']:.2f}, "
          f"lenient {summary['agreement_lenient']:.2f}; by mentions (gold, not W) follow "
          f"{summary['agreement_follow_mentions']:.2f}, lenient {summary['agreement_lenient_mentions']:.2f}")
    print("W = the wrong answer the rationale states ('evidence' states none: how often the reader says W unprompted).")
    return 0


if __name__ == "__main__":
    sys.exit(main())

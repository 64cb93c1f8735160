"""Wall time of one RL step's reward phase, as a multiple of one LM latency L: every reward call of
the step in flight together (``rl.reward_concurrency``) vs the old path (the judge on its own
``rationale_metrics.concurrency`` = 8 threads, the answer calls on 8 more).

    PYTHONPATH=tests .venv/bin/python bench/bench_rewards.py [--rollouts 8] [--latency 1.0] [--repeat 3]

One step = ``rollouts`` rationales x (8 aspects on the judge + 1 large-LM answer call) = 72 calls by
default, against the tests' loopback OpenAI-compatible server (tests/support/oracle_server.py), which
answers every call after ``latency`` seconds: the judge with log-probabilities, the large LM with a
fixed answer (a stand-in, not a real model). Each arm and repetition uses a fresh disk cache and new
rationales, so every call reaches the server. Both arms give the same rewards (checked).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

from _common import summary  # noqa: F401  (sets the offline environment first)


def _responder(body: dict):
    from lmcot.metrics.rationale.judge import ASPECT_QUESTIONS

    text = [m for m in body["messages"] if m["role"] == "user"][-1]["content"]
    if any(q in text for q in ASPECT_QUESTIONS.values()):
        n = int(text.split("Reason number ", 1)[1].split(".", 1)[0])
        p = (n % 17 + 1) / 20
        return {"text": "Yes", "logprobs": {"Yes": p, "No": 1 - p}}
    return "[[ ## answer ## ]]\nyes\n\n[[ ## completed ## ]]"


class _OwnThreads:
    """The scorer as the old path called it: no shared limit, its judge on rationale_metrics.concurrency threads."""

    def __init__(self, scorer):
        self.scorer = scorer

    def score(self, rows, aspects):
        return self.scorer.score(rows, aspects)


def step(url: str, rows: list[dict], limit: int | None) -> tuple[float, dict]:
    """One reward phase; ``limit`` None is the old path. Returns (seconds, components)."""
    from lmcot.config import ASPECTS, REWARDS, LargeLMConfig, RationaleMetricsConfig, RLConfig
    from lmcot.lms import build_lm, configure_cache
    from lmcot.metrics.rationale import RationaleScorer
    from lmcot.optimizers.rewards import RewardSet

    configure_cache(tempfile.mkdtemp(prefix="lmcot-bench-"))
    lm = build_lm(LargeLMConfig(model="openai/oracle", api_base=url, num_retries=0))
    metrics = RationaleMetricsConfig(backends={a: "judge" for a in ASPECTS})  # concurrency 8, the default
    scorer = RationaleScorer(metrics, judge_lm=lm)
    rl = RLConfig(weights={n: 1.0 for n in REWARDS}, report_to=[])
    if limit is None:
        scorer = _OwnThreads(scorer)  # the old path: the judge on its own 8 threads, the answers on 8 more
    rewards = RewardSet(rl, answer_lm=lm, scorer=scorer, concurrency=limit or 8)
    start = time.perf_counter()
    comps = rewards.components(rows)
    return time.perf_counter() - start, comps


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rollouts", type=int, default=8)
    ap.add_argument("--latency", type=float, default=1.0)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    from support.oracle_server import OracleServer

    calls = args.rollouts * 9
    q = "Were Scott Derrickson and Ed Wood of the same nationality?"

    def rows(tag: int) -> list[dict]:
        return [{"question": q, "context": "Scott Derrickson is an American director.", "answer": "yes",
                 "rationale": f"Reason number {tag * 1000 + i}."} for i in range(args.rollouts)]

    old, new = [], []
    with OracleServer(_responder) as srv:
        step(srv.url, rows(999), calls)  # warm-up: imports, connections, the judge's log-probability probe
        srv.delay = args.latency
        for r in range(args.repeat):
            t_old, c_old = step(srv.url, rows(2 * r), None)
            t_new, c_new = step(srv.url, rows(2 * r), calls)
            if c_old != c_new:
                raise SystemExit("the two paths gave different rewards")
            old.append(t_old / args.latency)
            new.append(t_new / args.latency)
    print(f"reward phase of one RL step: {args.rollouts} rollouts x (8 judged aspects + 1 answer) = {calls} calls, "
          f"L = {args.latency:.2f}s")
    print(f"old (judge 8 threads + answers 8): min {min(old):.2f}x L  median {statistics.median(old):.2f}x L")
    print(f"all at once (reward_concurrency={calls}): min {min(new):.2f}x L  median {statistics.median(new):.2f}x L")
    print(f"speed-up: {min(old) / min(new):.2f}x (min)  {statistics.median(old) / statistics.median(new):.2f}x (median)")


if __name__ == "__main__":
    main()

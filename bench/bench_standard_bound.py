"""Standard prompting at T threads against the concurrency bound N x L / T, lmcot's evaluation loop
vs ``dspy.Evaluate`` on the same program, LM settings and questions, in the same process.

    PYTHONPATH=tests .venv/bin/python bench/bench_standard_bound.py [--n 198] [--latency 0.2] [--threads 8 32]

The large LM is the tests' loopback OpenAI-compatible server (tests/support/oracle_server.py: a
scripted stand-in that knows the gold answers) answering each call after ``latency`` seconds. Both
arms call it through litellm (``dspy.LM(..., engine="litellm")``, what ``build_lm`` makes), each run
with a fresh disk cache so every call reaches the server. Printed: wall time / bound, min and median
of ``--repeat``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

from _common import dev_file


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=198)
    ap.add_argument("--latency", type=float, default=0.2)
    ap.add_argument("--threads", type=int, nargs="+", default=[8, 32])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    import logging

    import dspy

    logging.getLogger("dspy.evaluate.evaluate").setLevel(logging.WARNING)  # one "Average Metric" line per run
    from lmcot.config import LargeLMConfig
    from lmcot.data import load_examples
    from lmcot.programs.evaluation import evaluate_program
    from lmcot.lms import build_lm, configure_cache
    from lmcot.metrics.answer import answer_em
    from lmcot.programs.baselines import StandardPrompting
    from support.oracle_responder import OracleResponder
    from support.oracle_server import OracleServer

    examples = load_examples("hotpotqa", dev_file()).examples[: args.n]
    n = len(examples)

    def lmcot_arm(url: str, threads: int) -> float:
        configure_cache(tempfile.mkdtemp(prefix="lmcot-bench-"))
        lm = build_lm(LargeLMConfig(model="openai/oracle", api_base=url))
        start = time.perf_counter()
        _, summary = evaluate_program(StandardPrompting(lm), examples, concurrency=threads, label="standard",
                                      progress=False, lms=[lm])
        assert summary["errors"] == 0 and summary["usage"]["calls"] == n, summary
        return time.perf_counter() - start

    def dspy_arm(url: str, threads: int) -> float:
        configure_cache(tempfile.mkdtemp(prefix="lmcot-bench-"))
        lm = dspy.LM("openai/oracle", engine="litellm", api_base=url, api_key="no-key", temperature=0.0,
                     max_tokens=256)
        evaluate = dspy.Evaluate(devset=examples, metric=lambda ex, pred, trace=None: answer_em(pred.answer, ex.answer),
                                 num_threads=threads, display_progress=False, provide_traceback=False)
        start = time.perf_counter()
        evaluate(StandardPrompting(lm))
        return time.perf_counter() - start

    with OracleServer(OracleResponder([e.toDict() for e in examples])) as srv:
        lmcot_arm(srv.url, 4)  # warm-up: imports, connections
        dspy_arm(srv.url, 4)
        srv.delay = args.latency
        for threads in args.threads:
            bound = n * args.latency / threads
            runs: dict[str, list[float]] = {"lmcot": [], "DSPy Evaluate": []}
            for _ in range(args.repeat):
                runs["lmcot"].append(lmcot_arm(srv.url, threads) / bound)
                runs["DSPy Evaluate"].append(dspy_arm(srv.url, threads) / bound)
            print(f"T={threads}: {n} calls, L={args.latency:.2f}s, bound {bound:.2f}s")
            for name, r in runs.items():
                print(f"  {name:14s} min {min(r):.2f}x  median {statistics.median(r):.2f}x the bound")


if __name__ == "__main__":
    main()

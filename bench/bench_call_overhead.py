"""Per-call overhead at latency 0: the time one large-LM call takes in this process when the server
answers at once, through lmcot (``build_lm``: ``dspy.LM`` on litellm, then ``dspy.Predict``), bare
``litellm.completion`` / ``litellm.acompletion``, and DSPy's own HTTP client (``dspy.LM`` default
engine, no litellm), all in the same process, interleaved, min and median of ``--repeat``.

    PYTHONPATH=tests .venv/bin/python bench/bench_call_overhead.py [--calls 100] [--repeat 3] [--profile]

The server is the tests' loopback OpenAI-compatible server (tests/support/oracle_server.py) with a
fixed reply (a stand-in, not a model). Wall ms per call and CPU ms per call (``time.process_time``,
this process: client and server threads) are printed; the CPU figure is steadier on a shared box.
``--profile`` prints the cProfile of the lmcot arm (cumulative, top 40).

Two diagnostic arms (not what lmcot does) show what two parts of litellm's per-call work cost, by
switching them off through litellm internals: its success-logging task (run on a background thread
for every call, feeding litellm callbacks; skipped with litellm's private ``is_internal_call``) and
its per-call cost lookup (``Logging.response_cost_calculator`` patched to return None).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from _common import summary  # noqa: F401  (sets the offline environment first)

REPLY = "[[ ## answer ## ]]\nParis\n\n[[ ## completed ## ]]"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--model", default="openai/oracle", help="model name sent (a priced one, e.g. "
                    "openai/gpt-4o-mini, makes litellm compute a cost per call)")
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    import dspy
    import litellm

    from lmcot.config import LargeLMConfig
    from lmcot.lms import build_lm
    from support.oracle_server import OracleServer

    n = args.calls
    with OracleServer(lambda body: REPLY) as srv:
        lm = build_lm(LargeLMConfig(model=args.model, api_base=srv.url, cache=False, num_retries=0))
        native = dspy.LM(args.model, api_base=srv.url, api_key="no-key", cache=False, num_retries=0)
        predict = dspy.Predict("question -> answer")
        msgs = lambda tag, i: [{"role": "user", "content": f"{tag} {i}"}]  # noqa: E731

        def through(which):
            def run(tag):
                with dspy.context(lm=which):
                    for i in range(n):
                        predict(question=f"{tag} {i}")
            return run

        def bare(tag):
            for i in range(n):
                litellm.completion(model=args.model, api_base=srv.url, api_key="no-key", messages=msgs(tag, i))

        def bare_async(tag):
            async def go():
                for i in range(n):
                    await litellm.acompletion(model=args.model, api_base=srv.url, api_key="no-key",
                                              messages=msgs(tag, i))
            asyncio.run(go())

        from litellm._internal_context import is_internal_call
        from litellm.litellm_core_utils.litellm_logging import Logging

        def without_logging_and_cost(tag):  # diagnostic only: litellm internals
            original = Logging.response_cost_calculator
            Logging.response_cost_calculator = lambda self, *a, **k: None
            token = is_internal_call.set(True)
            try:
                bare(tag)
            finally:
                is_internal_call.reset(token)
                Logging.response_cost_calculator = original

        def without_logging(tag):  # diagnostic only: litellm internals
            token = is_internal_call.set(True)
            try:
                bare(tag)
            finally:
                is_internal_call.reset(token)

        arms = {"lmcot (dspy.Predict -> litellm)": through(lm), "bare litellm.completion": bare,
                "bare litellm.acompletion": bare_async, "DSPy own client (no litellm)": through(native),
                "[diag] litellm, no success logging": without_logging,
                "[diag] litellm, no logging, no cost": without_logging_and_cost}
        for name, arm in arms.items():
            arm(f"warm {name}")
        wall = {k: [] for k in arms}
        cpu = {k: [] for k in arms}
        for r in range(args.repeat):
            for name, arm in arms.items():
                w, c = time.perf_counter(), time.process_time()
                arm(f"{r} {name}")
                wall[name].append((time.perf_counter() - w) / n * 1000)
                time.sleep(0.3)  # litellm's background logging of this arm's calls ends inside its CPU figure
                cpu[name].append((time.process_time() - c) / n * 1000)
        print(f"{n} sequential calls per arm, latency 0, {args.model}; ms per call, min / median of {args.repeat}")
        for name in arms:
            print(f"  {name:38s} wall {min(wall[name]):5.2f} / {statistics.median(wall[name]):5.2f}   "
                  f"cpu {min(cpu[name]):5.2f} / {statistics.median(cpu[name]):5.2f}")
        if args.profile:
            import cProfile
            import pstats

            prof = cProfile.Profile()
            prof.enable()
            through(lm)("profile")
            prof.disable()
            pstats.Stats(prof).sort_stats("cumulative").print_stats(40)


if __name__ == "__main__":
    main()

"""Wall time of ``lmcot evaluate`` against a slow OpenAI-compatible server: concurrent large-LM calls
vs one at a time.

    PYTHONPATH=tests .venv/bin/python bench/bench_eval_concurrency.py [--n 40] [--delay 0.2] [--concurrency 8]

The server is the tests' scripted stand-in large LM (tests/support/oracle_server.py) on 127.0.0.1 with ``delay`` seconds per response (a stand-in
for API latency). Both runs happen in this process over the same examples with a fresh disk cache
each; the figure that matters is the ratio against ``eval.concurrency=1``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "configs", "quickstart", "hotpotqa_dev.json")


def run(url: str, n: int, concurrency: int, methods: list[str], small: str) -> float:
    from lmcot.config import load_config
    from lmcot.programs.evaluation import evaluate_from_config

    tmp = tempfile.mkdtemp(prefix="lmcot-bench-")
    # The small LM's tokenizer truncates the contexts (as in any evaluation); a tiny local one here.
    cfg = load_config(None, [f"small_lm.model={small}", f"large_lm.model=openai/oracle", f"large_lm.api_base={url}",
                             f"data.dev={DATA}",
                             f"cache_dir={tmp}/cache", f"eval.concurrency={concurrency}"])
    start = time.perf_counter()
    evaluate_from_config(cfg, methods=methods, out_dir=f"{tmp}/out", limit=n, progress=False)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--delay", type=float, default=0.2)
    ap.add_argument("--concurrency", type=int, default=8)
    args = ap.parse_args()
    from lmcot.data import load_examples
    from support.oracle_responder import OracleResponder  # tests/support: run with PYTHONPATH=tests
    from support.oracle_server import OracleServer

    from support.tiny import build_tiny_causal

    small = str(build_tiny_causal(os.path.join(tempfile.mkdtemp(prefix="lmcot-bench-"), "tiny-llama")))
    examples = [e.toDict() for e in load_examples("hotpotqa", DATA).examples]
    with OracleServer(OracleResponder(examples)) as srv:
        run(srv.url, 1, 1, ["standard"], small)  # warm-up: imports (litellm) and connection set-up
        srv.delay = args.delay
        base = run(srv.url, args.n, 1, ["standard", "cot"], small)
        fast = run(srv.url, args.n, args.concurrency, ["standard", "cot"], small)
    calls = 2 * args.n
    print(f"{calls} large-LM calls, {args.delay:.2f}s latency each (lower bound sequential {calls * args.delay:.1f}s)")
    print(f"eval.concurrency=1 (baseline): {base:.2f}s")
    print(f"eval.concurrency={args.concurrency}:          {fast:.2f}s")
    print(f"speed-up: {base / fast:.2f}x")


if __name__ == "__main__":
    main()

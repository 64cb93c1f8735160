"""Throughput of the in-process small LM under DSPy's threads: micro-batched vs one call at a time.

    PYTHONPATH=tests .venv/bin/python bench/bench_engine.py [--model PATH] [--n 32] [--threads 8]

Without ``--model`` it builds the tests' tiny random-init Llama (``support.tiny``) in a temporary folder.

Both runs happen in this process on the same prompts, greedy, with the DSPy cache off; the figure
that matters is the ratio (baseline = ``batch_size=1``, i.e. every request its own ``generate``).
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


def run(model: str, n: int, threads: int, batch_size: int, max_tokens: int) -> tuple[float, list[str]]:
    import dspy

    from lmcot.config import SmallLMConfig
    from lmcot.data import load_examples
    from lmcot.lms import build_lm
    from lmcot.programs import RationaleAdapter, Rationalize
    from lmcot.programs.parallel import map_concurrently

    here = os.path.dirname(os.path.abspath(__file__))
    examples = load_examples("hotpotqa", os.path.join(here, "..", "configs", "quickstart", "hotpotqa_train.json"),
                             max_context_tokens=200).examples
    examples = (examples * (n // len(examples) + 1))[:n]
    lm = build_lm(SmallLMConfig(model=model, batch_size=batch_size, max_tokens=max_tokens, cache=False))
    predict = dspy.Predict(Rationalize)
    predict.lm = lm

    def one(ex):
        with dspy.context(adapter=RationaleAdapter()):
            return predict(question=ex.question, context=ex.context).rationale

    one(examples[0])  # warm-up
    start = time.perf_counter()
    outputs = map_concurrently(one, examples, max_workers=threads)
    return time.perf_counter() - start, outputs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None, help="checkpoint folder or hub id (default: a tiny random-init Llama)")
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=32)
    args = ap.parse_args()
    if args.model is None:
        import tempfile

        from support.tiny import build_tiny_causal  # tests/support: run with PYTHONPATH=tests

        args.model = str(build_tiny_causal(os.path.join(tempfile.mkdtemp(prefix="lmcot-bench-"), "tiny-llama")))
    base_s, base_out = run(args.model, args.n, args.threads, 1, args.max_tokens)
    batched_s, batched_out = run(args.model, args.n, args.threads, args.batch_size, args.max_tokens)
    same = sum(a == b for a, b in zip(base_out, batched_out))
    print(f"model={args.model} n={args.n} threads={args.threads} max_tokens={args.max_tokens}")
    print(f"one generate per request (baseline): {base_s:.2f}s  ({args.n / base_s:.1f} rationales/s)")
    print(f"micro-batched (batch_size={args.batch_size}):     {batched_s:.2f}s  ({args.n / batched_s:.1f} rationales/s)")
    print(f"speed-up: {base_s / batched_s:.2f}x   identical greedy outputs: {same}/{args.n}")


if __name__ == "__main__":
    main()

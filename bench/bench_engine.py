"""Throughput of the in-process small LM under DSPy's threads: a batch of n concurrent requests vs
n single calls (the issue's "small-LM batch of 32 vs 32 single calls").

    PYTHONPATH=tests .venv/bin/python bench/bench_engine.py [--model PATH] [--n 32] [--repeats 3]

Without ``--model`` it builds the tests' tiny random-init Llama (``support.tiny``) in a temporary folder.

Both arms run in this process on the same prompts, greedy, with the DSPy cache off, ``--repeats``
times (min and median); baseline = ``batch_size=1`` (every request its own ``generate``), the other
arm ``batch_size=n`` with n threads. Prints generated tokens/s and the number of generates.
"""

from __future__ import annotations

import argparse
import os
import time

import _common  # noqa: E402  (environment first)


def build(model: str, batch_size: int, max_tokens: int):
    from lmcot.config import SmallLMConfig
    from lmcot.lms import build_lm

    return build_lm(SmallLMConfig(model=model, batch_size=batch_size, max_tokens=max_tokens, cache=False))


def run(lm, examples, threads: int) -> tuple[float, list[str], int, int]:
    import dspy

    from lmcot.programs import RationaleAdapter, Rationalize
    from lmcot.parallel import map_concurrently

    predict = dspy.Predict(Rationalize)
    predict.lm = lm
    engine = lm.engine
    generates, tokens = [], []
    original = engine.generate

    def counting(prompts, *a, **k):
        out = original(prompts, *a, **k)
        generates.append(len(prompts))
        tokens.append(sum(r[2] for r in out))
        return out

    engine.generate = counting

    def one(ex):
        with dspy.context(adapter=RationaleAdapter()):
            return predict(question=ex.question, context=ex.context).rationale

    try:
        start = time.perf_counter()
        outputs = map_concurrently(one, examples, max_workers=threads)
        return time.perf_counter() - start, outputs, len(generates), sum(tokens)
    finally:
        engine.generate = original


def main() -> None:
    import statistics

    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None, help="checkpoint folder or hub id (default: a tiny random-init Llama)")
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument("--context-tokens", type=int, default=200, help="data.max_context_tokens (approximate count)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    from lmcot.data import load_examples

    model = args.model or _common.tiny_model()
    examples = load_examples("hotpotqa", _common.dev_file(), max_context_tokens=args.context_tokens).examples[: args.n]
    single, batched = build(model, 1, args.max_tokens), build(model, args.n, args.max_tokens)
    run(single, examples[:1], 1)  # warm-up
    base, fast, same = [], [], True
    for _ in range(args.repeats):
        t, base_out, base_gens, base_tokens = run(single, examples, args.n)
        base.append(t)
        t, out, gens, tokens = run(batched, examples, args.n)
        fast.append(t)
        same &= out == base_out
    print(f"model={model} n={len(examples)} max_tokens={args.max_tokens}")
    print(f"{len(examples)} single calls (baseline): {_common.summary(base)}  {base_tokens / statistics.median(base):.1f} tok/s  "
          f"({base_gens} generates)")
    print(f"batched (batch_size={args.n}):     {_common.summary(fast)}  {tokens / statistics.median(fast):.1f} tok/s  "
          f"({gens} generates: the last run's batches)")
    print(f"speed-up {_common.ratio(base, fast)}   identical greedy outputs: {same}")


if __name__ == "__main__":
    main()

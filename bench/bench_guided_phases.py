"""Guided evaluation against a slow large LM: phased (all rationales, then all answers) vs the
per-example path (one rationale call then one answer call per thread), as a multiple of the bound.

    PYTHONPATH=tests .venv/bin/python bench/bench_guided_phases.py [--n 200] [--delay 0.2] [--threads 8 32] [--model PATH]

The large LM is the tests' scripted stand-in server (tests/support/oracle_server.py) on 127.0.0.1
answering after ``delay`` seconds; the small LM is the tests' tiny random-init Llama (or ``--model``)
in process. bound = N x delay / T (the large-LM calls alone at concurrency T). Both arms run in this
process, on the same examples, each with a fresh disk cache; 3 repetitions, min and median.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile

import _common  # noqa: F401  (environment first)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--delay", type=float, default=0.2)
    ap.add_argument("--threads", type=int, nargs="+", default=[8, 32])
    ap.add_argument("--model", default=None)
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument("--context-tokens", type=int, default=400, help="data.max_context_tokens (approximate count)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    import dspy

    from lmcot.config import LargeLMConfig, SmallLMConfig
    from lmcot.data import load_examples
    from lmcot.programs.evaluation import predict_all
    from lmcot.lms import build_lm, configure_cache
    from lmcot.programs import LMGuidedCoT
    from support.oracle_responder import OracleResponder
    from support.oracle_server import OracleServer

    class PerExample(dspy.Module):
        """The per-example path: no rationales_for, so predict_all calls forward per thread."""

        def __init__(self, program):
            super().__init__()
            self.program = program

        def forward(self, question, context):
            return self.program(question=question, context=context)

    examples = load_examples("hotpotqa", _common.dev_file(), max_context_tokens=args.context_tokens).examples
    examples = (examples * (args.n // len(examples) + 1))[: args.n]
    model = args.model or _common.tiny_model()
    small = build_lm(SmallLMConfig(model=model, max_tokens=args.max_tokens, batch_size=16))

    with OracleServer(OracleResponder([e.toDict() for e in examples])) as srv:
        large = build_lm(LargeLMConfig(model="openai/oracle", api_base=srv.url, num_retries=0))
        program = LMGuidedCoT(small, large)

        def run(prog, threads):
            configure_cache(tempfile.mkdtemp(prefix="lmcot-bench-"))  # nothing cached
            rows = predict_all(prog, examples, concurrency=threads, label="guided", progress=False)
            assert not any(r["error"] for r in rows), rows[0]["error"]
            return rows

        run(program, 8)  # warm-up (imports, connections, the model's first generate)
        srv.delay = args.delay
        print(f"n={args.n} latency={args.delay}s small LM={model} max_tokens={args.max_tokens}")
        for threads in args.threads:
            bound = args.n * args.delay / threads
            base, phased, same = [], [], True
            for _ in range(args.repeats):
                out: dict[str, list] = {}
                base.append(_common.timed(lambda: out.setdefault("base", run(PerExample(program), threads))))
                phased.append(_common.timed(lambda: out.setdefault("phased", run(program, threads))))
                same &= [r["answer"] for r in out["base"]] == [r["answer"] for r in out["phased"]]
            # The small LM alone (its rationales, nothing else): the part of a guided run the bound omits.
            small_only = _common.timed(lambda: (configure_cache(tempfile.mkdtemp(prefix="lmcot-bench-")),
                                                program.rationales_for(examples, max_workers=max(threads, 32))))
            print(f"T={threads}: bound {bound:.2f}s; the small LM alone takes {small_only:.2f}s")
            for name, times in (("per-example (baseline)", base), ("phased", phased)):
                print(f"  {name:23s} {_common.summary(times)}  = {min(times) / bound:.2f}x (min) / "
                      f"{statistics.median(times) / bound:.2f}x (median) the bound")
            print(f"  speed-up {_common.ratio(base, phased)}   same answers: {same}")

if __name__ == "__main__":
    main()

"""A rerun of ``lmcot evaluate`` whose every LM call is in the cache: with the memos (lmcot.memo:
remembered fingerprint and truncations, the small LM loaded lazily) vs without them (the small LM's
tokenizer, and for ``guided`` its weights, loaded and every context re-tokenized, as before).

    PYTHONPATH=tests .venv/bin/python bench/bench_cached_rerun.py [--n 1000] [--methods standard cot] [--model PATH]

The large LM is the tests' scripted stand-in server; the dev set is the shared HotpotQA sample,
repeated with numbered questions up to ``--n`` distinct questions. One filling run, then 3 reruns
per arm in this process (start-up imports excluded); both arms must make 0 requests.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile

import _common  # noqa: F401  (environment first)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--methods", nargs="+", default=["standard", "cot"])
    ap.add_argument("--model", default=None, help="small LM folder (default: the tests' tiny Llama)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    import lmcot.memo
    from lmcot.config import load_config
    from lmcot.programs.evaluation import evaluate_from_config
    from support.oracle_responder import OracleResponder
    from support.oracle_server import OracleServer

    records = json.load(open(_common.dev_file()))
    dev = []
    for k in range(args.n // len(records) + 1):
        dev += [{**r, "_id": f"{r['_id']}-{k}", "question": f"{r['question']} ({k})" if k else r["question"]} for r in records]
    dev = dev[: args.n]
    tmp = tempfile.mkdtemp(prefix="lmcot-bench-")
    dev_path = os.path.join(tmp, "dev.json")
    json.dump(dev, open(dev_path, "w"))
    model = args.model or _common.tiny_model()

    with OracleServer(OracleResponder(dev)) as srv:
        cfg = load_config(None, ["large_lm.model=openai/oracle", f"large_lm.api_base={srv.url}", f"data.dev={dev_path}",
                                 f"small_lm.model={model}", "small_lm.max_tokens=8", f"cache_dir={tmp}/cache",
                                 "eval.concurrency=16"])

        def rerun(memos: bool) -> None:
            before = srv.request_count
            set_memo_dir = lmcot.memo.set_memo_dir
            if not memos:  # the pre-memo behaviour: nothing remembered, everything loaded and counted
                lmcot.memo.set_memo_dir = lambda _path: set_memo_dir(None)
            try:
                evaluate_from_config(cfg, methods=args.methods, out_dir=f"{tmp}/out", progress=False)
            finally:
                lmcot.memo.set_memo_dir = set_memo_dir
            assert srv.request_count == before, "a cached rerun sent requests"

        fill = _common.timed(lambda: evaluate_from_config(cfg, methods=args.methods, out_dir=f"{tmp}/out", progress=False))
        base, new = [], []
        for _ in range(args.repeats):
            base.append(_common.timed(lambda: rerun(False)))
            new.append(_common.timed(lambda: rerun(True)))
    print(f"{args.n} questions, methods {','.join(args.methods)}, small LM {model}; first run {fill:.1f}s")
    print(f"cached rerun without memos (baseline): {_common.summary(base)}")
    print(f"cached rerun with memos:               {_common.summary(new)}")
    print(f"speed-up {_common.ratio(base, new)}   (0 requests in every rerun)")


if __name__ == "__main__":
    main()

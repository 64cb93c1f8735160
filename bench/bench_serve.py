"""`lmcot serve` under 64 concurrent clients vs `lmcot evaluate` on the same questions, same run.

    PYTHONPATH=tests .venv/bin/python bench/bench_serve.py [--n 192] [--clients 64] [--delay 0.2]
        [--concurrency 8] [--batch-size 16] [--max-tokens 16] [--repeats 3] [--model FOLDER]
        [--large-model hosted_vllm/NAME --api-base URL[,URL...]]      # a real large LM instead of the stand-in

Both arms are the real commands in their own processes, on one program folder (the tests' tiny
random-init student, or ``--model``, saved as `lmcot compile` saves a program) and the same large LM:
the tests' scripted stand-in server (tests/support/oracle_server.py) in this process, answering after
``delay`` seconds. Caches are off in both (``small_lm.cache`` / ``large_lm.cache``), so every question
costs a rationale and an answer call each time.

- baseline: ``lmcot evaluate --program P --methods guided``; its throughput is n / the seconds its
  evaluation loop took (metrics.json: start-up and model loading are not counted).
- serve: one ``lmcot serve --program P`` process, warmed up; ``clients`` asyncio clients (httpx, one
  request at a time each) take the n questions from one queue; throughput = n / wall time from the
  first request sent to the last reply; latency per request (p50 / p95).

Prints each repeat, min and median, the ratio serve / evaluate requests/s (goal >= 0.8), whether the
served answers equal evaluate's, and the small LM's mean batch under serve (its /health counters).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import _common

ROOT = Path(__file__).resolve().parents[1]


def program_folder(root: Path, model: str, args) -> Path:
    """A program folder as `lmcot compile` writes it, around a copy of ``model``."""
    from lmcot.config import load_config
    from lmcot.programs import LMGuidedCoT
    from lmcot.programs.program_io import save_program

    folder = root / "program"
    shutil.copytree(model, folder / "small_lm")
    cfg = load_config(None, [f"small_lm.model={folder / 'small_lm'}", f"small_lm.max_tokens={args.max_tokens}",
                             "large_lm.model=openai/oracle"])
    save_program(LMGuidedCoT(), folder, cfg)
    return folder


def run_settings(args, root: Path) -> list[str]:
    """What both arms run with; a program folder sets none of it (lmcot.program_trust)."""
    sets = [f"small_lm.batch_size={args.batch_size}", "small_lm.cache=false", "large_lm.cache=false",
            "large_lm.num_retries=0", f"data.dev={_common.dev_file()}", f"data.max_context_tokens={args.context_tokens}",
            f"eval.concurrency={args.concurrency}", f"cache_dir={root / 'cache'}"]
    return [part for item in sets for part in ("--set", item)]


def lmcot(*args: str, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    return subprocess.Popen([sys.executable, "-m", "lmcot", *args], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kw)


def run_evaluate(folder: Path, sets: list[str], n: int, out: Path) -> tuple[float, dict[str, str]]:
    proc = lmcot("evaluate", "--program", str(folder), "--methods", "guided", "--limit", str(n), "--out", str(out),
                 *sets)
    output, _ = proc.communicate()
    assert proc.returncode == 0, output[-3000:]
    seconds = json.loads((out / "metrics.json").read_text())["guided"]["seconds"]
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert not any(r["error"] for r in rows), rows[0]["error"]
    return seconds, {r["question"]: r["answer"] for r in rows}


class Server:
    def __init__(self, folder: Path, sets: list[str]):
        self.proc = lmcot("serve", "--program", str(folder), "--port", "0", "--served-model-name", "bench",
                          "--request-timeout", "600", *sets)
        self.lines: list[str] = []
        threading.Thread(target=lambda: self.lines.extend(iter(self.proc.stdout.readline, "")), daemon=True).start()
        while not (found := re.search(r"serving '.*?' at (http://\S+)/v1", "".join(self.lines))):
            assert self.proc.poll() is None, "".join(self.lines)[-3000:]
            time.sleep(0.1)
        self.url = found.group(1)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=300)


async def drive(url: str, examples, clients: int) -> tuple[float, list[float], dict[str, str], int]:
    import httpx

    queue: asyncio.Queue = asyncio.Queue()
    for ex in examples:
        queue.put_nowait(ex)
    latencies: list[float] = []
    answers: dict[str, str] = {}
    failures = 0

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal failures
        while not queue.empty():
            ex = queue.get_nowait()
            start = time.perf_counter()
            reply = await http.post(url + "/v1/chat/completions", json={
                "model": "bench", "messages": [{"role": "user", "content": ex.question}], "context": ex.context})
            latencies.append(time.perf_counter() - start)
            if reply.status_code == 200:
                answers[ex.question] = reply.json()["choices"][0]["message"]["content"]
            else:
                failures += 1

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(limits=limits, timeout=600) as http:
        start = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        wall = time.perf_counter() - start
    return wall, latencies, answers, failures


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=192, help="questions (at most the dev file's 198)")
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--delay", type=float, default=0.2)
    ap.add_argument("--concurrency", type=int, default=8, help="eval.concurrency (large-LM calls at once), both arms")
    ap.add_argument("--batch-size", type=int, default=16, help="small_lm.batch_size")
    ap.add_argument("--max-tokens", type=int, default=16, help="small_lm.max_tokens (rationale length)")
    ap.add_argument("--context-tokens", type=int, default=120, help="data.max_context_tokens")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--model", default=None, help="the student's folder (default: the tests' tiny random-init model)")
    ap.add_argument("--large-model", default=None, help="a real large LM (litellm model string) instead of the stand-in")
    ap.add_argument("--api-base", default=None, help="its server(s), comma-separated (several: litellm's Router)")
    args = ap.parse_args()

    import httpx

    from lmcot.config import load_config
    from lmcot.contexts import context_token_counter
    from lmcot.splits import load_split
    from support.oracle_responder import OracleResponder
    from support.oracle_server import OracleServer

    root = Path(tempfile.mkdtemp(prefix="lmcot-bench-serve-"))
    folder = program_folder(root, args.model or _common.tiny_model(), args)
    cfg = load_config(None, [f"small_lm.model={folder / 'small_lm'}", f"data.dev={_common.dev_file()}",
                             f"data.max_context_tokens={args.context_tokens}"])
    # The questions evaluate reads: same file, same truncation by the same tokenizer.
    examples = load_split(cfg, "dev", limit=args.n, count_tokens=context_token_counter(cfg))
    assert len(examples) == args.n, f"the dev file has {len(examples)} questions; --n {args.n} is more"
    print(f"n={args.n} questions, {args.clients} clients, large LM {args.large_model or f'stand-in, latency {args.delay}s'}, "
          f"eval.concurrency={args.concurrency}, small_lm.batch_size={args.batch_size}, "
          f"max_tokens={args.max_tokens}; bound n x latency / concurrency = {args.n * args.delay / args.concurrency:.2f}s")

    with contextlib.ExitStack() as stack:
        if args.large_model:
            url = f"[{args.api_base}]" if "," in (args.api_base or "") else args.api_base
            sets = ["--set", f"large_lm.model={args.large_model}", "--set", f"large_lm.api_base={url}"]
        else:
            oracle = stack.enter_context(OracleServer(OracleResponder([e.toDict() for e in examples])))
            oracle.delay = args.delay
            sets = ["--set", f"large_lm.api_base={oracle.url}"]
        sets += run_settings(args, root)
        server = Server(folder, sets)
        try:
            asyncio.run(drive(server.url, examples[: args.clients], args.clients))  # warm-up: connections, first batches
            before = httpx.get(server.url + "/health").json()["small_lm"]
            evaluate_rps, serve_rps, p50s, p95s, same = [], [], [], [], True
            for repeat in range(args.repeats):
                seconds, evaluated = run_evaluate(folder, sets, args.n, root / f"eval{repeat}")
                wall, latencies, served, failures = asyncio.run(drive(server.url, examples, args.clients))
                assert failures == 0, f"{failures} requests failed"
                evaluate_rps.append(args.n / seconds)
                serve_rps.append(args.n / wall)
                p50s.append(percentile(latencies, 0.5))
                p95s.append(percentile(latencies, 0.95))
                same &= served == {q: evaluated[q] for q in served}
                print(f"  repeat {repeat + 1}: evaluate {seconds:.2f}s = {evaluate_rps[-1]:.1f} req/s; serve {wall:.2f}s = "
                      f"{serve_rps[-1]:.1f} req/s, latency p50 {p50s[-1]:.2f}s p95 {p95s[-1]:.2f}s")
            after = httpx.get(server.url + "/health").json()["small_lm"]
        finally:
            server.stop()
    batches = after["batches"] - before["batches"]
    mean_batch = (after["batched_requests"] - before["batched_requests"]) / max(1, batches)
    print(f"evaluate: {min(evaluate_rps):.1f} / {statistics.median(evaluate_rps):.1f} req/s (min / median)")
    print(f"serve:    {min(serve_rps):.1f} / {statistics.median(serve_rps):.1f} req/s (min / median); latency p50 "
          f"{statistics.median(p50s):.2f}s, p95 {statistics.median(p95s):.2f}s (median of repeats)")
    print(f"serve / evaluate requests/s: {min(serve_rps) / min(evaluate_rps):.2f} (min)  "
          f"{statistics.median(serve_rps) / statistics.median(evaluate_rps):.2f} (median)   goal >= 0.8")
    print(f"same answers in both arms: {same}; small LM under serve: {batches} generates, mean batch {mean_batch:.1f} "
          f"(batch_size {args.batch_size})")


if __name__ == "__main__":
    main()

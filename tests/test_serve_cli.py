"""`lmcot serve` as a user runs it: a subprocess serving a program that `lmcot compile` just built from
the tiny student, driven with the official ``openai`` client: concurrent requests, streaming, the
bearer key, and SIGTERM with a request in flight (it is answered, then the process exits 0). The
upstream key and the server's key never appear in its output. (The app's behaviour in detail, in
process: tests/test_serve.py.)"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from openai import OpenAI

from support.cli import run_cli
from support.paths import HOTPOT, ROOT

pytestmark = pytest.mark.slow

SERVER_KEY_VAR, SERVER_KEY = "LMCOT_TEST_SERVE_KEY", "serve-cli-key-19bd"
UPSTREAM_KEY_VAR, UPSTREAM_KEY = "LMCOT_TEST_SERVE_UPSTREAM", "sk-upstream-cli-SECRET-66"


@pytest.fixture(scope="module")
def compiled(oracle_server, tiny_causal_path, tmp_path_factory):
    out = tmp_path_factory.mktemp("serve-cli") / "program"
    result = run_cli(["compile", "--out", str(out), "--stages", "kd",
                      "--set", f"small_lm.model={tiny_causal_path}", "--set", "small_lm.max_tokens=12",
                      "--set", "large_lm.model=openai/oracle", "--set", f"large_lm.api_base={oracle_server.url}",
                      "--set", f"data.train={HOTPOT}", "--set", "data.train_limit=4", "--set", f"data.dev={HOTPOT}",
                      "--set", "data.dev_limit=2", "--set", "data.max_context_tokens=200", "--set", "kd.num_samples=1",
                      "--set", "kd.max_steps=2", "--set", "kd.batch_size=2", "--set", "kd.report_to=[none]",
                      "--set", f"cache_dir={out.parent / 'compile-cache'}"])
    assert result.returncode == 0, result.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def examples():
    from lmcot.data import load_examples

    return load_examples("hotpotqa", str(HOTPOT), max_context_tokens=200).examples


class ServeProcess:
    """`python -m lmcot serve ...` with its output collected on a thread (a full pipe would block it)."""

    def __init__(self, args: list[str], env: dict[str, str]):
        self.proc = subprocess.Popen([sys.executable, "-m", "lmcot", "serve", *args], cwd=ROOT, env=env, text=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.lines: list[str] = []
        self.reader = threading.Thread(target=lambda: self.lines.extend(iter(self.proc.stdout.readline, "")),
                                       daemon=True)
        self.reader.start()
        self.url = None
        for _ in range(3000):  # start-up imports torch, transformers, dspy, litellm: up to a few minutes here
            found = re.search(r"serving '.*?' at (http://\S+/v1)", "".join(self.lines))
            if found:
                self.url = found.group(1)
                break
            assert self.proc.poll() is None, "".join(self.lines)[-3000:]
            time.sleep(0.1)
        assert self.url, "".join(self.lines)[-3000:]

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=60)


def test_serve_answers_streams_checks_the_key_and_drains_on_sigterm(compiled, examples, tmp_path):
    from support.oracle_responder import OracleResponder
    from support.oracle_server import OracleServer

    oracle = OracleResponder([e.toDict() for e in examples])
    open_gate, reached = threading.Event(), threading.Event()
    open_gate.set()

    def gated(body):  # holds a request while the gate is closed, so SIGTERM meets it in flight
        if not open_gate.is_set():
            reached.set()
            open_gate.wait(120)
        return oracle(body)

    env = {**os.environ, "PYTHONUNBUFFERED": "1", SERVER_KEY_VAR: SERVER_KEY, UPSTREAM_KEY_VAR: UPSTREAM_KEY}
    with OracleServer(gated) as upstream:
        serve = ServeProcess(["--program", str(compiled), "--port", "0", "--api-key-env", SERVER_KEY_VAR,
                              "--served-model-name", "tiny-lmcot", "--set", f"large_lm.api_base={upstream.url}",
                              "--set", f"large_lm.api_key_env={UPSTREAM_KEY_VAR}",
                              "--set", f"cache_dir={tmp_path / 'cache'}"], env)
        try:
            client = OpenAI(base_url=serve.url, api_key=SERVER_KEY, max_retries=0)

            def ask(example, **kw):
                return client.chat.completions.create(
                    model="tiny-lmcot", messages=[{"role": "user", "content": example.question}],
                    extra_body={"context": example.context}, **kw)

            batch = examples[:8]
            with ThreadPoolExecutor(len(batch)) as pool:
                replies = list(pool.map(ask, batch))
            assert [r.choices[0].message.content for r in replies] == [e.answer for e in batch]
            assert all(isinstance(r.choices[0].message.reasoning_content, str) for r in replies)
            assert all(r.usage.prompt_tokens > 0 for r in replies)

            chunks = list(ask(examples[8], stream=True))
            assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == examples[8].answer

            with pytest.raises(Exception) as err:
                OpenAI(base_url=serve.url, api_key="wrong", max_retries=0).models.list()
            assert err.value.status_code == 401

            # SIGTERM with a request in flight: it is answered, then the server exits 0.
            open_gate.clear()
            in_flight = ThreadPoolExecutor(1).submit(ask, examples[9])
            assert reached.wait(120), "the request never reached the large LM"
            serve.proc.send_signal(signal.SIGTERM)
            time.sleep(0.5)  # let uvicorn take the signal before the answer arrives (order only, not asserted)
            open_gate.set()
            assert in_flight.result(timeout=120).choices[0].message.content == examples[9].answer
            assert serve.proc.wait(timeout=120) == 0, serve.output[-3000:]
        finally:
            open_gate.set()
            serve.stop()
    serve.reader.join(timeout=10)
    assert "stopped (SIGTERM)" in serve.output
    assert UPSTREAM_KEY not in serve.output and SERVER_KEY not in serve.output

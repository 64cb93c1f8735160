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
    """`python -m lmcot serve ...` with its output read on a thread (a full pipe would block it);
    ``wait_for(pattern)`` returns the first match once that line is out (events, not timing)."""

    def __init__(self, args: list[str], env: dict[str, str]):
        self.proc = subprocess.Popen([sys.executable, "-m", "lmcot", "serve", *args], cwd=ROOT, env=env, text=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.lines: list[str] = []
        self.changed = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        # Start-up imports torch, transformers, dspy and litellm: up to minutes on a busy box.
        self.url = self.wait_for(r"serving '.*?' at (http://\S+/v1)").group(1)

    def _read(self) -> None:
        for line in iter(self.proc.stdout.readline, ""):
            with self.changed:
                self.lines.append(line)
                self.changed.notify_all()
        with self.changed:
            self.lines.append("")  # end of output
            self.changed.notify_all()

    def wait_for(self, pattern: str, timeout: float = 600):
        with self.changed:
            found = self.changed.wait_for(lambda: re.search(pattern, self.output) or (self.lines and self.lines[-1] == ""),
                                          timeout)
        match = re.search(pattern, self.output)
        assert match, f"{pattern!r} never came: {self.output[-3000:]}"
        return match

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
    env = {**os.environ, "PYTHONUNBUFFERED": "1", SERVER_KEY_VAR: SERVER_KEY, UPSTREAM_KEY_VAR: UPSTREAM_KEY}
    with OracleServer(oracle) as upstream:
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
            upstream.hold_after(0)  # the large LM holds the next call until released
            in_flight = ThreadPoolExecutor(1).submit(ask, examples[9])
            assert upstream.wait_until_holding(120), "the request never reached the large LM"
            serve.proc.send_signal(signal.SIGTERM)
            serve.wait_for(r"Shutting down")  # uvicorn took the signal: no new connections, this one goes on
            upstream.release()
            assert in_flight.result(timeout=120).choices[0].message.content == examples[9].answer
            assert serve.proc.wait(timeout=120) == 0, serve.output[-3000:]
        finally:
            upstream.release()
            serve.stop()
    serve.reader.join(timeout=10)
    assert "stopped (SIGTERM)" in serve.output
    assert UPSTREAM_KEY not in serve.output and SERVER_KEY not in serve.output

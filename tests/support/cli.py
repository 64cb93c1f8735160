"""Run ``python -m lmcot ...`` in a child process from the checkout, as a user's shell would.

A child process pays lmcot's imports again (seconds), so a test that runs one belongs to the slow
tier: ``run_cli`` refuses to run inside a test that is not marked ``@pytest.mark.slow`` (the quick
tier, ``pytest -m "not slow"``, stays quick because of it; tests/conftest.py sets the flag)."""

from __future__ import annotations

import os
import subprocess
import sys

from pathlib import Path

from support.paths import HOTPOT, ROOT

# Set by tests/conftest.py before each test's fixtures run: is the test marked slow?
in_slow_test = True


def run_cli(args: list[str], timeout: float = 900) -> subprocess.CompletedProcess:
    if not in_slow_test:
        raise AssertionError("this test runs the CLI in a child process: mark it @pytest.mark.slow "
                             "(or call the command in-process with typer's CliRunner)")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "lmcot", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def compile_overrides(server, tmp_path: Path, student: Path, stages: str = "kd", train_limit: int = 12) -> list[str]:
    """``--set`` flags for a small, fast compile of a tiny student against the scripted server."""
    return [
        "--set", f"small_lm.model={student}", "--set", "small_lm.max_tokens=24",
        "--set", "large_lm.model=openai/oracle", "--set", f"large_lm.api_base={server.url}",
        "--set", "large_lm.num_retries=1",
        "--set", f"data.train={HOTPOT}", "--set", f"data.train_limit={train_limit}",
        "--set", f"data.dev={HOTPOT}", "--set", "data.dev_limit=6", "--set", "data.max_context_tokens=200",
        "--set", "kd.num_samples=2", "--set", "kd.max_steps=30", "--set", "kd.learning_rate=0.003",
        "--set", "kd.report_to=[none]", "--set", "kd.batch_size=4",
        "--set", "rl.max_steps=2", "--set", "rl.num_generations=2", "--set", "rl.batch_size=4",
        "--set", "rl.max_new_tokens=16", "--set", "rl.report_to=[none]",
        "--set", f"cache_dir={tmp_path / 'cache'}", "--set", f"stages=[{stages}]",
    ]

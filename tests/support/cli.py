"""Run ``python -m lmcot.commands.cli ...`` in a child process from the checkout, as a user's shell would."""

from __future__ import annotations

import os
import subprocess
import sys

from support.paths import ROOT


def run_cli(args: list[str], timeout: float = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "lmcot", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)

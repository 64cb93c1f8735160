"""Helpers shared by the bench scripts: repeated timing (min and median of 3 on a noisy 2-core box)
and the tests' tiny random-init model (tests/support: run the scripts with PYTHONPATH=tests)."""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from typing import Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED_HOTPOT = "/work/shared/data/hotpotqa_dev_distractor_sample.json"
QUICKSTART_HOTPOT = os.path.join(HERE, "..", "configs", "quickstart", "hotpotqa_dev.json")


def dev_file() -> str:
    """The 198-question real HotpotQA sample where present, else the quickstart's dev file."""
    return SHARED_HOTPOT if os.path.exists(SHARED_HOTPOT) else QUICKSTART_HOTPOT


def tiny_model() -> str:
    from support.tiny import build_tiny_causal

    return str(build_tiny_causal(os.path.join(tempfile.mkdtemp(prefix="lmcot-bench-"), "tiny-llama")))


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def summary(times: list[float]) -> str:
    return f"min {min(times):.2f}s  median {statistics.median(times):.2f}s"


def ratio(base: list[float], new: list[float]) -> str:
    return (f"{min(base) / min(new):.2f}x (min)  {statistics.median(base) / statistics.median(new):.2f}x (median)")

"""Regression tests for problems found in review: secrets nested in `extra`, cost of cached calls,
seeded sampling under micro-batching, and the shipped configs."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("override", [
    "large_lm.extra.extra_headers.Authorization=Bearer sk-LEAK",
    "large_lm.extra.aws_secret_access_key=LEAK",
    "kd.teacher.extra.access_token=LEAK",
])
def test_credentials_anywhere_in_extra_are_refused(override):
    from lmcot.config import ConfigError, load_config

    cfg_args = [override] + (["kd.teacher.model=openai/x"] if override.startswith("kd.") else [])
    with pytest.raises(ConfigError, match="secrets do not belong"):
        load_config(None, cfg_args)


def test_ordinary_extra_keys_are_fine():
    from lmcot.config import load_config

    cfg = load_config(None, ["large_lm.extra.max_completion_tokens=5", "large_lm.extra.frequency_penalty=0.1"])
    assert cfg.large_lm.extra == {"max_completion_tokens": 5, "frequency_penalty": 0.1}


def test_cached_calls_are_not_billed_again():
    from lmcot.usage import UsageMeter

    class FakeLM:
        model = "openai/x"

        def __init__(self):
            self.history = [{"uuid": "old", "usage": {"prompt_tokens": 1}, "cost": 9.0}]

    lm = FakeLM()
    meter = UsageMeter([lm])
    lm.history += [
        {"uuid": "a", "usage": {"prompt_tokens": 10, "completion_tokens": 2}, "cost": 0.5},
        {"uuid": "b", "usage": {}, "cost": 0.5},  # a cache hit keeps the original call's cost
    ]
    report = meter.report()
    assert report["calls"] == 2 and report["cached_calls"] == 1
    assert report["prompt_tokens"] == 10 and report["completion_tokens"] == 2
    assert report["cost"] == pytest.approx(0.5)


def test_seeded_sampled_requests_are_not_batched_together(tiny_causal_path):
    """One torch seed for a whole batch would make a seeded sample depend on its batch-mates."""
    from concurrent.futures import ThreadPoolExecutor

    from lmcot.hf_engine import TransformersEngine

    engine = TransformersEngine(str(tiny_causal_path), batch_size=8, batch_wait_ms=50)
    calls: list[int] = []
    original = engine.generate

    def counting(prompts, *args, **kwargs):
        calls.append(len(prompts))
        return original(prompts, *args, **kwargs)

    engine.generate = counting
    from lmcot.hf_engine import _Job

    def submit(i: int):
        return engine._submit(_Job(f"prompt {i}", (0.8, None, None, 4, 7, ())))

    with ThreadPoolExecutor(6) as pool:
        outs = list(pool.map(submit, range(6)))
    assert calls == [1] * 6
    # Same seed, same prompt -> same text however the requests arrived.
    again = engine._submit(_Job("prompt 3", (0.8, None, None, 4, 7, ())))
    assert again[0] == outs[3][0]
    calls.clear()
    with ThreadPoolExecutor(6) as pool:  # greedy requests still share one generate
        list(pool.map(lambda i: engine._submit(_Job(f"prompt {i}", (0.0, None, None, 4, None, ()))), range(6)))
    assert len(calls) < 6


@pytest.mark.parametrize("name", ["quickstart.yaml", "hotpotqa.yaml"])
def test_shipped_configs_validate(name):
    from lmcot.config import load_config

    cfg = load_config(ROOT / "configs" / name)
    assert cfg.stages == ["kd", "rl"]
    if name == "quickstart.yaml":
        assert Path(ROOT / cfg.data.train).is_file() and Path(ROOT / cfg.data.dev).is_file()

"""Usage and cost of LM calls (lmcot.usage, the one reader of DSPy's history entries): cached calls
are not billed again, and the history fields it relies on are still what DSPy records."""

from __future__ import annotations

import pytest


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


def test_contract_dspy_history_entries_carry_usage_cost_uuid_and_response(oracle_server, fresh_cache):
    """lmcot.usage reads ``usage``, ``cost``, ``uuid`` and ``response.choices[].finish_reason`` from
    ``lm.history`` (dspy.track_usage has no cost and no cache hits). If DSPy renames them, this fails
    here rather than every report silently reading 0."""
    from lmcot.config import LargeLMConfig
    from lmcot.lms import build_lm
    from lmcot.usage import UsageMeter, count_calls, hit_max_tokens

    lm = build_lm(LargeLMConfig(model="openai/oracle", api_base=oracle_server.url, num_retries=0))
    meter = UsageMeter([lm])
    lm("Who wrote it?")
    lm("Who wrote it?")  # a cache hit
    entry = lm.history[-2]
    assert {"usage", "cost", "uuid", "response"} <= set(entry)
    assert entry["usage"].get("prompt_tokens", 0) > 0 and not lm.history[-1]["usage"]
    assert all(hasattr(c, "finish_reason") for c in entry["response"].choices)
    assert count_calls(lm.history[-2:])["cached_calls"] == 1 and meter.report()["calls"] == 2
    assert hit_max_tokens(lm.history[-2:]) is False


def test_contract_an_in_process_reply_cut_at_max_tokens_is_seen(tiny_causal_path):
    """An in-process engine's history entry holds a ``dspy.lm15`` Response (``finish_reason`` on it,
    no ``choices``): a teacher reply cut at max_tokens must read as cut there, not as a garbled reply
    (which the bootstrap retries and reports as an unreachable teacher)."""
    from lmcot.config import SmallLMConfig
    from lmcot.lms import build_lm
    from lmcot.usage import hit_max_tokens

    lm = build_lm(SmallLMConfig(model=str(tiny_causal_path), backend="transformers", max_tokens=3, cache=False))
    lm("hello there")
    assert hit_max_tokens(lm.history[-1:]) is True

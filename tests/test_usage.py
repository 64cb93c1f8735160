"""Usage and cost of LM calls (lmcot.usage, the one meter): a call answered from the cache counts what
it used when it was paid and is marked cached, and the history fields the meter reads are still what
DSPy records."""

from __future__ import annotations

import pytest


class _FakeLM:
    model = "openai/x"

    def __init__(self):
        self.history = [{"uuid": "old", "usage": {"prompt_tokens": 1}, "cost": 9.0}]


class _CacheHit:
    cache_hit = True  # what DSPy stamps on a litellm reply served from its cache


def _entry(uuid: str, usage: dict, cost=None, response=None, question="Who wrote it?") -> dict:
    return {"uuid": uuid, "model": "openai/x", "messages": [{"role": "user", "content": question}],
            "kwargs": {"temperature": 0.0}, "usage": usage, "cost": cost, "response": response,
            "outputs": ["Ed Wood"]}


def test_a_cached_call_counts_the_tokens_recorded_when_it_was_paid(tmp_path):
    from lmcot.usage import UsageLedger, UsageMeter

    ledger = UsageLedger(tmp_path / "usage.jsonl")
    lm = _FakeLM()
    meter = UsageMeter([lm], ledger=ledger)
    lm.history += [_entry("a", {"prompt_tokens": 10, "completion_tokens": 2}, cost=0.5),
                   _entry("b", {}, cost=0.5, response=_CacheHit())]  # the same request, from the cache
    report = meter.report()
    assert report["calls"] == 2 and report["cached_calls"] == 1 and report["estimated_calls"] == 0
    assert (report["prompt_tokens"], report["completion_tokens"], report["cached_tokens"]) == (20, 4, 12)
    assert report["paid_cost"] == pytest.approx(0.5)  # this run paid once
    # The ledger is on disk: a later process counts the cached call the same way.
    again = UsageMeter([lm], ledger=UsageLedger(tmp_path / "usage.jsonl"))
    lm.history.append(_entry("c", {}, response=_CacheHit()))
    assert again.report()["prompt_tokens"] == 10 and again.report()["estimated_calls"] == 0


def test_a_cached_call_nobody_recorded_is_estimated_and_says_so(tmp_path):
    from lmcot.usage import UsageLedger, UsageMeter

    lm = _FakeLM()
    meter = UsageMeter([lm], ledger=UsageLedger(tmp_path / "usage.jsonl"))
    lm.history.append(_entry("a", {}, response=_CacheHit(), question="A question nobody paid for here?"))
    report = meter.report()
    assert report["cached_calls"] == 1 and report["estimated_calls"] == 1
    assert report["prompt_tokens"] > 0 and report["completion_tokens"] > 0  # litellm's token counter


def test_contract_dspy_history_entries_carry_usage_cost_uuid_and_response(oracle_server, fresh_cache, tmp_path):
    """lmcot.usage reads ``usage``, ``cost``, ``uuid``, ``messages``, ``kwargs`` and
    ``response.cache_hit`` / ``response.choices[].finish_reason`` from ``lm.history`` (dspy.track_usage
    has no cost and no cache hits). If DSPy renames them, this fails here rather than every report
    silently reading 0."""
    from lmcot.config import LargeLMConfig
    from lmcot.lms import build_lm
    from lmcot.usage import UsageLedger, UsageMeter, hit_max_tokens, is_cached

    lm = build_lm(LargeLMConfig(model="openai/oracle", api_base=oracle_server.url, num_retries=0))
    meter = UsageMeter([lm], ledger=UsageLedger(tmp_path / "usage.jsonl"))
    lm("Who wrote it?")
    lm("Who wrote it?")  # a cache hit
    entry, hit = lm.history[-2], lm.history[-1]
    assert {"usage", "cost", "uuid", "response", "messages", "kwargs"} <= set(entry)
    assert entry["usage"].get("prompt_tokens", 0) > 0 and not hit["usage"]
    assert getattr(hit["response"], "cache_hit", False) and not is_cached(entry) and is_cached(hit)
    assert all(hasattr(c, "finish_reason") for c in entry["response"].choices)
    report = meter.report()
    assert report["calls"] == 2 and report["cached_calls"] == 1 and report["estimated_calls"] == 0
    assert report["prompt_tokens"] == 2 * entry["usage"]["prompt_tokens"]
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


def test_an_in_process_reply_keeps_its_generate_seconds_and_tokens_through_the_cache(tiny_causal_path, fresh_cache,
                                                                                     tmp_path):
    """The engine writes each reply's share of the generate time into the reply; DSPy caches it with
    the reply, so a method that reads rationales another method generated counts their time."""
    from lmcot.config import SmallLMConfig
    from lmcot.lms import build_lm
    from lmcot.usage import UsageLedger, UsageMeter, engine_seconds

    lm = build_lm(SmallLMConfig(model=str(tiny_causal_path), backend="transformers", max_tokens=4))
    first = UsageMeter([lm], ledger=UsageLedger(tmp_path / "usage.jsonl"))
    lm("hello there")
    made = first.report()
    second = UsageMeter([lm], ledger=UsageLedger(tmp_path / "usage.jsonl"))
    lm("hello there")  # from DSPy's cache: no generate
    again = second.report()
    assert engine_seconds(lm.history[-2]) > 0 and engine_seconds(lm.history[-1]) == engine_seconds(lm.history[-2])
    assert made["cached_calls"] == 0 and again["cached_calls"] == 1 and again["untimed_calls"] == 0
    assert again["small_lm_seconds"] == made["small_lm_seconds"] > 0
    assert (again["prompt_tokens"], again["completion_tokens"]) == (made["prompt_tokens"], made["completion_tokens"])
    assert again["cost"] == 0.0 and again["by_model"][lm.model]["in_process"] is True

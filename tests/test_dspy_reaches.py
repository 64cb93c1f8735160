"""Contract tests for lmcot/_dspy_reaches.py: each DSPy internal lmcot relies on still behaves as
assumed. A failure here names the reach to rework after a DSPy upgrade."""

from __future__ import annotations

import inspect

import dspy
import pytest
from dspy.adapters.base import Adapter
from dspy.utils.exceptions import AdapterParseError

from lmcot._dspy_reaches import BlankEmptyCompletions, state_without_lms, validate_request


class _Plain(Adapter):
    def format(self, signature, demos, inputs):
        return [{"role": "user", "content": "x"}]

    def parse(self, signature, completion):
        return {"answer": completion.strip()}


def test_adapter_call_postprocess_keeps_its_signature_and_fails_on_empty_text():
    params = list(inspect.signature(Adapter._call_postprocess).parameters)
    assert params == ["self", "processed_signature", "original_signature", "outputs", "lm", "lm_kwargs"], (
        "DSPy changed Adapter._call_postprocess: rework BlankEmptyCompletions")
    sig = dspy.Signature("question -> answer")
    with pytest.raises(AdapterParseError):  # what BlankEmptyCompletions exists to avoid
        _Plain()._call_postprocess(sig, sig, [{"text": ""}], None, {})

    class Blank(BlankEmptyCompletions):
        format, parse = _Plain.format, _Plain.parse

    assert Blank()._call_postprocess(sig, sig, [{"text": ""}, ""], None, {}) == [{"answer": ""}, {"answer": ""}]


def test_validate_request_is_still_where_dspy_engines_import_it():
    from dspy.lm15 import Config, Message, Request, TextPart

    good = Request(model="m", messages=[Message.user([TextPart("hi")])], config=Config())
    assert validate_request(good) is None  # a well-formed request passes
    with pytest.raises(Exception):  # and DSPy's check still refuses one it cannot serve
        validate_request(Request(model="m", messages=[], config=Config()))


def test_dump_state_has_one_lm_entry_per_predictor():
    class Program(dspy.Module):
        def __init__(self):
            super().__init__()
            self.step = dspy.Predict("question -> answer")

    program = Program()
    program.step.lm = dspy.LM("openai/x")
    assert program.dump_state()["step"]["lm"] is not None, "DSPy's state no longer keeps a predictor's LM under 'lm'"
    assert state_without_lms(program)["step"]["lm"] is None


def test_dspy_builds_its_cache_lazily_so_an_unset_cache_can_be_told_apart(monkeypatch):
    from lmcot._dspy_reaches import chosen_dspy_cache, dspy_cache_is_set, restore_dspy_cache

    monkeypatch.delattr(dspy, "cache")  # as in a fresh process (conftest set one)
    assert not dspy_cache_is_set() and chosen_dspy_cache() is None
    assert not dspy_cache_is_set(), "reading the chosen cache built one"
    built = dspy.cache
    assert built is not None, "DSPy no longer builds its default cache on first read: rework dspy_cache_is_set"
    assert dspy_cache_is_set() and chosen_dspy_cache() is built
    restore_dspy_cache(None)  # "nobody chose one" again: the next read builds a new default
    assert not dspy_cache_is_set()
    assert dspy.cache is not built
    restore_dspy_cache(built)
    assert dspy.cache is built


def test_litellm_call_reaches_behave_as_dspys_litellm_engine():
    """lmcot.http_lm's RouterEngine sends DSPy's calls through a litellm Router using these four reaches."""
    import litellm
    from dspy import lm15
    from dspy.lm15 import Config, Message, Request, TextPart

    from lmcot._dspy_reaches import finish_legacy_call, litellm_errors, litellm_to_lm15, lm15_to_litellm

    with pytest.raises(lm15.TransportError):  # a refused connection: retryable for DSPy
        with litellm_errors(model="openai/x"):
            raise litellm.APIConnectionError(message="refused", llm_provider="openai", model="x")
    raw = litellm.ModelResponse(choices=[{"message": {"role": "assistant", "content": "Paris"}, "finish_reason": "stop"}],
                                usage={"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4})
    result = finish_legacy_call(dspy.LM("openai/x"), raw, {"messages": [{"role": "user", "content": "hi"}]})
    assert result.outputs == ["Paris"] and result.usage["prompt_tokens"] == 3
    request = Request(model="openai/x", messages=[Message.user([TextPart("hi")])], config=Config(max_tokens=5, top_k=3))
    data = lm15_to_litellm(request)
    assert data["messages"] == [{"role": "user", "content": "hi"}] and data["top_k"] == 3 and "model" not in data
    assert litellm_to_lm15(raw, request).text == "Paris"


def test_litellm_keeps_a_responses_cost_where_dspy_reads_it():
    """The reply cache keeps a cached reply's cost (and scrubs its endpoint) in litellm's per-response
    extras; DSPy reads a call's cost from there."""
    import litellm

    from lmcot._dspy_reaches import finish_legacy_call, response_extras, set_response_extras

    raw = litellm.completion(model="openai/x", messages=[{"role": "user", "content": "hi"}], mock_response="Paris",
                             api_key="sk-none")
    assert response_extras(raw) is not None, "litellm no longer keeps _hidden_params on a response"
    rebuilt = litellm.ModelResponse(**raw.model_dump(mode="json"))
    set_response_extras(rebuilt, {"response_cost": 0.25, "api_base": "http://h/v1"})
    assert response_extras(rebuilt)["response_cost"] == 0.25
    result = finish_legacy_call(dspy.LM("openai/x"), rebuilt, {"messages": [{"role": "user", "content": "hi"}]})
    assert result.cost == 0.25, "DSPy no longer reads a call's cost from litellm's _hidden_params"
    assert response_extras(object()) is None

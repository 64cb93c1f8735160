"""Every place lmcot relies on DSPy internals that have no public API, in one module.

DSPy 3.4 has no public seam for these; each is pinned by ``tests/test_dspy_reaches.py``, which fails
loudly (naming the reach) when a DSPy release changes what it relies on:

* ``validate_request``: the request check DSPy's own engines run (``dspy.clients.engines.base``,
  not exported), so an in-process engine rejects what DSPy's would.
* ``BlankEmptyCompletions``: overrides ``Adapter._call_postprocess`` so an empty completion (a small
  LM that stops at once) parses as an empty output instead of raising ``AdapterParseError`` and
  failing the whole example; ``Adapter.parse`` is never called for an empty text, so it cannot help.
* ``state_without_lms``: the ``"lm"`` entry of each predictor in ``Module.dump_state()``, cleared
  so a saved program does not carry its LMs (they are rebuilt from the config on load).
* ``dspy_cache_is_set``: whether ``dspy.cache`` exists yet. DSPy builds its default cache lazily, on
  the first read of the module attribute (a module ``__getattr__``); until then nothing is in the
  module's namespace, so lmcot can tell "nobody chose a cache" from a cache the user configured.
  ``chosen_dspy_cache`` / ``restore_dspy_cache`` read and put back that state without building it.
* ``response_extras`` / ``set_response_extras``: litellm's per-response bookkeeping
  (``_hidden_params``: the endpoint, ``response_cost``), which DSPy reads for a call's cost; the reply
  cache scrubs the endpoint from it and keeps the cost of a cached reply.
* ``litellm_errors``, ``finish_legacy_call``, ``lm15_to_litellm``, ``litellm_to_lm15``: what DSPy's
  own litellm engine does around a ``litellm.completion`` call (error mapping, the bookkeeping and
  result of an ordinary call, the typed-request conversions), for ``lmcot.http_lm``'s RouterEngine, which
  sends the same call through a ``litellm.Router`` instead.

(DSPy's LM history entries, read for cost and cache hits, are the same kind of reach; they live in
``lmcot.usage`` beside the counter that reads them, pinned by ``tests/test_usage.py``.)
"""

from __future__ import annotations

from typing import Any

from dspy.adapters.base import Adapter


def validate_request(request) -> None:
    from dspy.clients.engines.base import validate_request as dspy_validate_request

    dspy_validate_request(request)


class BlankEmptyCompletions(Adapter):
    """An adapter base for which an empty completion is an empty output, not a parse error."""

    def _call_postprocess(self, processed_signature, original_signature, outputs, lm, lm_kwargs):
        outputs = [(dict(o, text=o.get("text") or " ") if isinstance(o, dict) else (o or " ")) for o in outputs]
        return super()._call_postprocess(processed_signature, original_signature, outputs, lm, lm_kwargs)


def state_without_lms(program) -> dict[str, Any]:
    """``program.dump_state()`` with every predictor's LM cleared."""
    state = program.dump_state()
    for value in state.values():
        if isinstance(value, dict) and "lm" in value:
            value["lm"] = None
    return state


def dspy_cache_is_set() -> bool:
    """Whether ``dspy.cache`` was assigned, configured or built (read) yet in this process."""
    return chosen_dspy_cache() is not None


def chosen_dspy_cache():
    """``dspy.cache`` when one is set, else None, without building DSPy's default (reading the
    attribute would build it, and create its folder)."""
    import dspy

    return vars(dspy).get("cache")


def restore_dspy_cache(cache) -> None:
    """Put back what :func:`chosen_dspy_cache` returned: that cache, or none chosen at all."""
    import dspy

    if cache is not None:
        dspy.cache = cache
    elif "cache" in vars(dspy):
        del dspy.cache


def response_extras(value: Any) -> dict[str, Any] | None:
    """litellm's bookkeeping of a response (``_hidden_params``), the live dict; None when it has none."""
    extras = getattr(value, "_hidden_params", None)
    return extras if isinstance(extras, dict) else None


def set_response_extras(value: Any, extras: dict[str, Any]) -> None:
    """Give a rebuilt response the bookkeeping it had (DSPy reads its ``response_cost``)."""
    value._hidden_params = dict(extras)


def litellm_errors(*, model: str):
    """Context manager turning litellm's exceptions into the ones DSPy classifies and retries."""
    from dspy.clients.engines.litellm_errors import litellm_errors as dspy_litellm_errors

    return dspy_litellm_errors(model=model)


def finish_legacy_call(lm, raw, request: dict[str, Any]):
    """The ``CallResult`` DSPy's litellm engine returns for an ordinary call's raw litellm reply."""
    from dspy.clients.call_context import completed_legacy
    from dspy.clients.call_result import CallResult

    completed_legacy(raw)
    lm._check_truncation(raw)
    return CallResult.legacy(lm, raw, kwargs=request)


def lm15_to_litellm(request) -> dict[str, Any]:
    """``litellm.completion`` keyword arguments (no model) for a typed chat request."""
    from dspy.clients.lm15_boundary import request_kwargs

    validate_request(request)
    data = request_kwargs(request, "chat")
    if request.config.top_k is not None:  # litellm forwards top_k; the OpenAI dialect has no field for it
        data["top_k"] = request.config.top_k
    return data


def litellm_to_lm15(raw, request):
    """The typed ``Response`` for a litellm chat reply to ``request``."""
    from dspy.clients.lm15_boundary import response_value

    return response_value(raw, "chat", request)

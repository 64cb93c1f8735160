"""Tokens and cost of LM calls, read from DSPy's history entries: the one usage counter.

DSPy records every call (with litellm's usage and, where litellm knows the model's price, its cost)
in ``lm.history`` / ``module.history``. ``dspy.track_usage`` is the public seam for tokens, but it
records neither cost nor cache hits, so cost and call counts are read from the history entries here,
and only here (``tests/test_usage.py`` pins the entry fields this relies on). ``UsageMeter`` remembers
which entries existed when it started and sums the new ones, so methods run one after another are
billed separately.
"""

from __future__ import annotations

from typing import Any, Iterable

import dspy


def count_calls(entries: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """``{"calls", "cached_calls", "prompt_tokens", "completion_tokens", "cost"}`` of history entries;
    ``cost`` is None when no paid call had a known price."""
    part: dict[str, Any] = {"calls": 0, "cached_calls": 0, "prompt_tokens": 0, "completion_tokens": 0, "cost": None}
    for entry in entries:
        part["calls"] += 1
        usage = entry.get("usage") or {}
        # DSPy answers a cached call with empty usage: it cost nothing this run.
        if not usage:
            part["cached_calls"] += 1
        part["prompt_tokens"] += int(usage.get("prompt_tokens") or 0)
        part["completion_tokens"] += int(usage.get("completion_tokens") or 0)
        # A cached entry keeps the cost of the original call; this run did not pay it again.
        if usage and entry.get("cost") is not None:
            part["cost"] = (part["cost"] or 0.0) + float(entry["cost"])
    return part


def paid_cost(entries: Iterable[dict[str, Any]]) -> float | None:
    """Cost of the calls that were paid this run (cache hits excluded); None when any paid call's
    price is unknown."""
    costs = [e.get("cost") for e in entries if e.get("usage")]
    return None if any(c is None for c in costs) else float(sum(costs))


def hit_max_tokens(entries: Iterable[dict[str, Any]]) -> bool:
    """Did a call stop at max_tokens (``finish_reason == "length"``)? A litellm reply carries it on
    each choice; an in-process engine's reply (a ``dspy.lm15`` ``Response``) carries it itself."""
    for entry in entries:
        response = entry.get("response")
        choices = getattr(response, "choices", None) or [response]
        if any(getattr(c, "finish_reason", None) == "length" for c in choices):
            return True
    return False


class UsageMeter:
    def __init__(self, lms: list[dspy.LM | None]):
        self.lms = [lm for lm in dict.fromkeys(lms) if lm is not None]
        self._seen = {id(lm): {e.get("uuid") for e in lm.history} for lm in self.lms}

    def report(self) -> dict[str, Any]:
        """``{"calls", "cached_calls", "prompt_tokens", "completion_tokens", "cost", "by_model"}``;
        ``cost`` is None when no call had a known price."""
        total: dict[str, Any] = {"calls": 0, "cached_calls": 0, "prompt_tokens": 0, "completion_tokens": 0,
                                 "cost": None, "by_model": {}}
        for lm in self.lms:
            seen = self._seen[id(lm)]
            part = count_calls(e for e in lm.history if e.get("uuid") not in seen)
            total["by_model"][lm.model] = part
            for key in ("calls", "cached_calls", "prompt_tokens", "completion_tokens"):
                total[key] += part[key]
            if part["cost"] is not None:
                total["cost"] = (total["cost"] or 0.0) + part["cost"]
        return total

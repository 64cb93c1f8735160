"""Tokens and cost per method, read from the LMs' DSPy history.

DSPy records every call (with litellm's usage and, where litellm knows the model's price, its cost)
in ``lm.history``. ``UsageMeter`` remembers which entries existed when it started and sums the new
ones, so methods run one after another are billed separately.
"""

from __future__ import annotations

from typing import Any

import dspy


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
            part = {"calls": 0, "cached_calls": 0, "prompt_tokens": 0, "completion_tokens": 0, "cost": None}
            for entry in lm.history:
                if entry.get("uuid") in seen:
                    continue
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
            total["by_model"][lm.model] = part
            for key in ("calls", "cached_calls", "prompt_tokens", "completion_tokens"):
                total[key] += part[key]
            if part["cost"] is not None:
                total["cost"] = (total["cost"] or 0.0) + part["cost"]
        return total

"""What a method costs: large-LM prompt/completion tokens and dollars, small-LM seconds.

A method's cost is what it *would* cost on its own, whatever the disk cache already held. A call
answered from DSPy's cache (empty ``usage``; e.g. the quality-selected answer that self-consistency
already asked for) is counted with the usage the provider reported when it was paid, kept in a
ledger (``OUT/usage-ledger.jsonl``: a hash of the request -> token counts; no text, no key); a
cached call the ledger never saw (paid by another run, or inside a compiler stage) is counted with
litellm's token counter (``estimated_calls``). ``cached_calls`` says how many came from the cache. Dollars come from litellm's price table
(``litellm.cost_per_token``); a model litellm has no price for gets ``None`` ("n/a" in the report).
Small-LM seconds are the wall time of the in-process engine's ``generate`` (its one batching thread,
so time is not double-counted across concurrent requests).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from pathlib import Path
from typing import Any


class SmallLMClock:
    """Accumulates the seconds an in-process engine spends in ``generate`` while started."""

    def __init__(self, engine):
        self.engine, self.seconds, self._lock = engine, 0.0, threading.Lock()
        self._orig = None

    def __enter__(self) -> "SmallLMClock":
        if self.engine is not None:
            self._orig = self.engine.generate

            def timed(*args, **kwargs):
                start = time.perf_counter()
                try:
                    return self._orig(*args, **kwargs)
                finally:
                    with self._lock:
                        self.seconds += time.perf_counter() - start

            self.engine.generate = timed
        return self

    def __exit__(self, *exc) -> None:
        if self.engine is not None:
            del self.engine.generate  # the instance attribute; the class method is back


def _estimate(model: str, entry: dict[str, Any]) -> tuple[int, int]:
    import litellm

    messages = entry.get("messages") or [{"role": "user", "content": entry.get("prompt") or ""}]
    outputs = entry.get("outputs") or []
    text = "".join(o if isinstance(o, str) else str(o.get("text", "")) if isinstance(o, dict) else str(o)
                   for o in outputs)
    prompt = litellm.token_counter(model=model, messages=messages)
    completion = litellm.token_counter(model=model, text=text) if text else 0
    return int(prompt), int(completion)


def price(model: str, prompt_tokens: int, completion_tokens: int) -> float | None:
    """Dollars for the tokens at litellm's list price, or None if litellm does not know the model."""
    import litellm

    try:
        p, c = litellm.cost_per_token(model=model, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)
    except Exception:  # noqa: BLE001 - litellm raises its own "not mapped" errors for unknown models
        return None
    return float(p) + float(c)


class UsageLedger:
    """Token counts of paid calls by request hash, appended to a JSONL file (survives a crash)."""

    def __init__(self, path: str | Path):
        from lmcot.jsonl import read_jsonl

        self.path = Path(path)
        self.known = {r["key"]: (r["prompt_tokens"], r["completion_tokens"]) for r in read_jsonl(self.path, repair=True)}

    @staticmethod
    def key(entry: dict[str, Any]) -> str:
        kwargs = {k: v for k, v in (entry.get("kwargs") or {}).items() if not k.startswith("api_")}
        blob = json.dumps([entry.get("model"), entry.get("messages") or entry.get("prompt"), kwargs],
                          sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()

    def add(self, key: str, prompt: int, completion: int) -> None:
        from lmcot.jsonl import append_jsonl

        if key not in self.known:
            self.known[key] = (prompt, completion)
            append_jsonl(self.path, [{"key": key, "prompt_tokens": prompt, "completion_tokens": completion}])


class LargeLMMeter:
    """Tokens of the large LM's calls made between construction and ``report()`` (from ``lm.history``)."""

    def __init__(self, lm, ledger: UsageLedger | None = None):
        self.lm, self.ledger = lm, ledger
        self._seen = {e.get("uuid") for e in lm.history}

    def report(self) -> dict[str, Any]:
        calls = cached = estimated = prompt = completion = 0
        for entry in self.lm.history:
            if entry.get("uuid") in self._seen:
                continue
            calls += 1
            usage = entry.get("usage") or {}
            key = UsageLedger.key(entry) if self.ledger is not None else None
            if getattr(entry.get("response"), "cache_hit", False) or not usage:
                cached += 1
            if usage:
                p, c = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
                if key is not None:
                    self.ledger.add(key, p, c)
            elif key is not None and key in self.ledger.known:
                p, c = self.ledger.known[key]
            else:
                estimated += 1
                p, c = _estimate(self.lm.model, entry)
            prompt += p
            completion += c
        return {"model": self.lm.model, "calls": calls, "cached_calls": cached, "estimated_calls": estimated,
                "prompt_tokens": prompt, "completion_tokens": completion,
                "cost_usd": price(self.lm.model, prompt, completion)}

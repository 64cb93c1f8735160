"""Tokens, dollars and small-LM seconds of LM calls: the one usage meter (evaluate, compile, experiment).

DSPy records every call in ``lm.history`` (with litellm's usage and, where litellm knows the model's
price, its cost). ``dspy.track_usage`` is the public seam for tokens, but it records neither cost nor
cache hits, so the entries are read here, and only here (``tests/test_usage.py`` pins the fields this
relies on).

**The one rule.** A call counts what it needs on its own, whatever the disk cache already held:

* *cached* means DSPy answered it from its cache (it marks a litellm reply ``cache_hit`` and clears
  the ``usage`` of every cache hit); :func:`is_cached` is the only test of it;
* a cached call is counted with the tokens it used when it was paid: an in-process engine's reply
  keeps its own usage in the cache; a provider's reply does not, so every paid call's tokens are
  written to a *ledger* beside the cache (``<cache_dir>/memo/usage.jsonl``: a hash of the request ->
  token counts; no text, no key); a cached call the ledger never saw (paid before the ledger existed,
  or with another cache folder) is counted with litellm's token counter and reported as *estimated*;
* dollars are litellm's list price for those tokens (``None``: litellm has no price for the model);
  ``paid_cost`` is what this run paid (cache hits excluded). In-process models cost no dollars;
* small-LM seconds are the in-process engine's generate time for each reply, which the engine
  records in the reply (``lmcot.hf_engine``; kept in the cache with it), so a cached reply counts
  the time it took when it was generated.

``UsageMeter`` remembers which entries existed when it started and sums the new ones, so methods
run one after another are billed separately.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

log = logging.getLogger(__name__)

def is_cached(entry: dict[str, Any]) -> bool:
    """Was this history entry answered from DSPy's cache? The one definition of a cached call."""
    return bool(getattr(entry.get("response"), "cache_hit", False)) or not entry.get("usage")


def engine_seconds(entry: dict[str, Any]) -> float | None:
    """The generate seconds an in-process engine recorded in the reply (None: not recorded)."""
    from lmcot.hf_engine import ENGINE_DATA, GENERATE_SECONDS

    data = getattr(entry.get("response"), "provider_data", None)
    value = (data or {}).get(ENGINE_DATA, {}).get(GENERATE_SECONDS) if isinstance(data, dict) else None
    return float(value) if value is not None else None


def _recorded_usage(entry: dict[str, Any]) -> tuple[int, int] | None:
    """Token counts a cached reply still carries (an in-process engine's ``dspy.lm15`` Response keeps
    its usage through the cache; a litellm reply's is cleared)."""
    usage = getattr(entry.get("response"), "usage", None)
    prompt, completion = getattr(usage, "input_tokens", None), getattr(usage, "output_tokens", None)
    if prompt or completion:
        return int(prompt or 0), int(completion or 0)
    return None


def price(model: str, prompt_tokens: int, completion_tokens: int) -> float | None:
    """Dollars for the tokens at litellm's list price, or None if litellm does not know the model."""
    import litellm

    try:
        p, c = litellm.cost_per_token(model=model, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)
    except Exception:  # noqa: BLE001 - litellm raises its own "not mapped" errors for unknown models
        return None
    return float(p) + float(c)


def _estimate(model: str, entry: dict[str, Any]) -> tuple[int, int]:
    import litellm

    messages = entry.get("messages") or [{"role": "user", "content": entry.get("prompt") or ""}]
    outputs = entry.get("outputs") or []
    text = "".join(o if isinstance(o, str) else str(o.get("text", "")) if isinstance(o, dict) else str(o)
                   for o in outputs)
    prompt = litellm.token_counter(model=model, messages=messages)
    completion = litellm.token_counter(model=model, text=text) if text else 0
    return int(prompt), int(completion)


class UsageLedger:
    """Token counts of paid calls by request hash, appended to a JSONL file (survives a crash)."""

    def __init__(self, path: str | Path):
        from lmcot.jsonl import read_jsonl

        self.path = Path(path)
        self._lock = threading.Lock()
        self._pending: list[dict[str, Any]] = []
        self.known = {r["key"]: (r["prompt_tokens"], r["completion_tokens"]) for r in read_jsonl(self.path, repair=True)}

    @staticmethod
    def key(entry: dict[str, Any]) -> str:
        kwargs = {k: v for k, v in (entry.get("kwargs") or {}).items() if not k.startswith("api_")}
        blob = json.dumps([entry.get("model"), entry.get("messages") or entry.get("prompt"), kwargs],
                          sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()

    def record(self, key: str, prompt: int, completion: int) -> None:
        """Remember a paid call's tokens now (a cache hit later in the same batch reads them);
        :meth:`flush` writes what is new to the file."""
        with self._lock:
            if key not in self.known:
                self.known[key] = (prompt, completion)
                self._pending.append({"key": key, "prompt_tokens": prompt, "completion_tokens": completion})

    def flush(self) -> None:
        from lmcot.jsonl import append_jsonl

        with self._lock:
            rows, self._pending = self._pending, []
        if rows:
            append_jsonl(self.path, rows)


_LEDGERS: dict[Path, UsageLedger] = {}
_LEDGERS_LOCK = threading.Lock()


def current_ledger() -> UsageLedger | None:
    """The ledger beside the configured cache (``<cache_dir>/memo/usage.jsonl``, set by
    ``lms.configure_cache`` with the memo folder), or None before any cache is configured."""
    from lmcot.memo import memo_dir

    folder = memo_dir()
    if folder is None:
        return None
    path = Path(folder) / "usage.jsonl"
    with _LEDGERS_LOCK:
        if path not in _LEDGERS:
            _LEDGERS[path] = UsageLedger(path)
        return _LEDGERS[path]


@dataclass
class CallUsage:
    """One call by the rule of the module docstring."""

    cached: bool
    prompt_tokens: int
    completion_tokens: int
    estimated: bool      # a cached call whose tokens nobody recorded: litellm's token counter
    paid_cost: float | None  # what this run paid for it (0 when cached; None when the price is unknown)
    seconds: float | None    # in-process generate seconds recorded in the reply


def call_usage(entry: dict[str, Any], model: str, ledger: UsageLedger | None = None) -> CallUsage:
    """What one history entry counts; a paid call's tokens are recorded in ``ledger``."""
    seconds = engine_seconds(entry)
    if not is_cached(entry):
        usage = entry.get("usage") or {}
        p, c = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
        if ledger is not None:
            ledger.record(UsageLedger.key(entry), p, c)
        cost = entry.get("cost")
        return CallUsage(False, p, c, False, None if cost is None else float(cost), seconds)
    recorded = _recorded_usage(entry)
    if recorded is None and ledger is not None:
        recorded = ledger.known.get(UsageLedger.key(entry))
    if recorded is not None:
        return CallUsage(True, *recorded, False, 0.0, seconds)
    return CallUsage(True, *_estimate(model, entry), True, 0.0, seconds)


def meter_entries(entries: Iterable[dict[str, Any]], model: str, *, ledger: UsageLedger | None = None,
                  in_process: bool = False) -> dict[str, Any]:
    """Counts of one model's history entries by the rule: ``calls``, ``cached_calls``,
    ``estimated_calls``, ``prompt_tokens``, ``completion_tokens``, ``cached_tokens`` (of the tokens,
    those of cached calls), ``cost`` (list price of all of them; None when unknown; 0 in-process),
    ``paid_cost`` (this run's bill), ``small_lm_seconds`` (recorded generate time) and
    ``untimed_calls`` (in-process replies without a recorded time, e.g. cached by an older lmcot);
    ``in_process`` says which kind of model it was."""
    part: dict[str, Any] = {"in_process": in_process, "calls": 0, "cached_calls": 0, "estimated_calls": 0, "prompt_tokens": 0,
                            "completion_tokens": 0, "cached_tokens": 0, "cost": None, "paid_cost": None,
                            "small_lm_seconds": 0.0, "untimed_calls": 0}
    paid_costs: list[float | None] = []
    for entry in entries:
        u = call_usage(entry, model, ledger)
        part["calls"] += 1
        part["cached_calls"] += u.cached
        part["estimated_calls"] += u.estimated
        part["prompt_tokens"] += u.prompt_tokens
        part["completion_tokens"] += u.completion_tokens
        if u.cached:
            part["cached_tokens"] += u.prompt_tokens + u.completion_tokens
        else:
            paid_costs.append(u.paid_cost)
        if in_process:
            if u.seconds is None:
                part["untimed_calls"] += 1
            else:
                part["small_lm_seconds"] += u.seconds
    if ledger is not None:
        ledger.flush()
    if in_process:
        part["cost"] = part["paid_cost"] = 0.0
    else:
        part["cost"] = price(model, part["prompt_tokens"], part["completion_tokens"]) if part["calls"] else 0.0
        part["paid_cost"] = None if any(c is None for c in paid_costs) else float(sum(paid_costs))
    part["small_lm_seconds"] = round(part["small_lm_seconds"], 3)
    return part


def hit_max_tokens(entries: Iterable[dict[str, Any]]) -> bool:
    """Did a call stop at max_tokens (``finish_reason == "length"``)? A litellm reply carries it on
    each choice; an in-process engine's reply (a ``dspy.lm15`` ``Response``) carries it itself."""
    for entry in entries:
        response = entry.get("response")
        choices = getattr(response, "choices", None) or [response]
        if any(getattr(c, "finish_reason", None) == "length" for c in choices):
            return True
    return False


_SUMMED = ("calls", "cached_calls", "estimated_calls", "prompt_tokens", "completion_tokens", "cached_tokens",
           "small_lm_seconds", "untimed_calls")


class UsageMeter:
    """Usage of ``lms`` from now on (see the module docstring); ``ledger`` defaults to the one
    beside the configured cache."""

    def __init__(self, lms: list[Any], ledger: UsageLedger | None = None):
        self.lms = [lm for lm in dict.fromkeys(lms) if lm is not None]
        self.ledger = ledger if ledger is not None else current_ledger()
        self._seen = {id(lm): {e.get("uuid") for e in lm.history} for lm in self.lms}

    def report(self) -> dict[str, Any]:
        """The sums of :func:`meter_entries` over the LMs, and ``by_model`` (each LM's own); ``cost``
        and ``paid_cost`` are None when a model with calls has no known price."""
        from lmcot.hf_engine import hf_engine_of

        total: dict[str, Any] = {k: 0 for k in _SUMMED}
        total.update(cost=0.0, paid_cost=0.0, by_model={})
        for lm in self.lms:
            seen = self._seen[id(lm)]
            new = [e for e in lm.history if e.get("uuid") not in seen]
            if seen and len(lm.history) == len(new):
                # DSPy keeps the last dspy.settings.max_history_size entries per LM: older calls of
                # this meter may have been dropped, so these counts are a lower bound.
                log.warning("usage of %s: more calls than DSPy's history keeps; counts are a lower bound", lm.model)
            part = meter_entries(new, lm.model, ledger=self.ledger, in_process=hf_engine_of(lm) is not None)
            # Two LM objects of one model (the large LM and a judge built from the same config) bill as one.
            same = total["by_model"].get(lm.model)
            total["by_model"][lm.model] = part if same is None else _sum_parts(same, part)
            total = _sum_parts(total, part)
        return total


def network_usage(report: dict[str, Any]) -> dict[str, Any]:
    """What the models reached over the network used, from a :meth:`UsageMeter.report` (in-process
    models cost seconds, not tokens): calls, tokens (and how many of each were cached) and dollars,
    None when a model with calls has no known price."""
    parts = [p for p in report.get("by_model", {}).values() if not p.get("in_process")]
    costs = [p.get("cost") for p in parts if p.get("calls")]
    return {"calls": sum(p["calls"] for p in parts), "cached_calls": sum(p["cached_calls"] for p in parts),
            "tokens": sum(p["prompt_tokens"] + p["completion_tokens"] for p in parts),
            "cached_tokens": sum(p.get("cached_tokens", 0) for p in parts),
            "cost": None if any(c is None for c in costs) else float(sum(costs))}


def _sum_parts(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for key in _SUMMED:
        out[key] = a[key] + b[key]
    for key in ("cost", "paid_cost"):
        out[key] = None if a[key] is None or b[key] is None else a[key] + b[key]
    out["small_lm_seconds"] = round(out["small_lm_seconds"], 3)
    return out


class TokensSpent:
    """Tokens spent by the LM calls made inside :func:`tokens_spent`'s block; filled when it exits."""

    def __init__(self) -> None:
        self.by_model: dict[str, dict[str, int]] = {}

    @property
    def prompt_tokens(self) -> int:
        return sum(m["prompt_tokens"] for m in self.by_model.values())

    @property
    def completion_tokens(self) -> int:
        return sum(m["completion_tokens"] for m in self.by_model.values())


@contextmanager
def tokens_spent():
    """The tokens the calls made in this block spent now, apart from calls made at the same time
    elsewhere (one request of ``lmcot serve`` among concurrent ones): ``UsageMeter`` reads the LMs'
    shared histories, which concurrent requests interleave, while ``dspy.track_usage`` lives in a
    ContextVar (this thread and the threads it starts through ``lmcot.parallel``). Unlike the meter's
    rule for reports, a call answered from the cache adds 0 here: a served reply reports what it cost.
    Filled even when the block raises (what was spent before the failure)."""
    from dspy.utils.usage_tracker import track_usage

    spent = TokensSpent()
    with track_usage() as tracker:
        try:
            yield spent
        finally:
            for model, usage in tracker.get_total_tokens().items():
                spent.by_model[model] = {"prompt_tokens": int(usage.get("prompt_tokens") or 0),
                                         "completion_tokens": int(usage.get("completion_tokens") or 0)}


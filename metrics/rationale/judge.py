"""LLM-judge backend for the eight rationale-quality aspects (factuality ... readability).

For each (row, aspect) the judge LM is asked one yes/no question about the rationale, and the score
is the judge's probability of "yes":

* **HTTP judge with log-probabilities** (OpenAI, vLLM, ...): one call asking for the first tokens'
  ``top_logprobs``; ``P = P(yes) / (P(yes) + P(no))`` summed over the yes-like and no-like tokens.
* **HTTP judge without them** (Anthropic, Ollama, a server that ignores the option): the share of
  ``samples`` answers at ``temperature`` that start with "yes". Each sample has its own
  ``rollout_id`` so DSPy's cache keeps them apart. An endpoint found to lack log-probabilities is
  remembered for the rest of the process, so later calls skip the probe.
* **In-process transformers judge**: P(yes) straight from the next-token logits after the rendered
  prompt, batched, no sampling and no cache (deterministic and local).

HTTP calls go through the ``dspy.LM`` as explicit ``dspy.lm15.Request`` objects (the DSPy 3.4 API
that returns token log-probabilities and is not deprecated), so DSPy's disk cache and retries apply:
a rerun makes no new request. A reply with no yes/no verdict (garbled, or off the format) is asked
again and never cached (``lmcot.reply_cache``): after 3 tries a sample counts as "no" and a probe
falls back to sampling, and a rerun asks again. Calls run on ``concurrency`` threads that keep
DSPy's context.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import dspy

from lmcot.aspects import JUDGE_QUESTIONS
from lmcot.prompting import tokenize_prompts

log = logging.getLogger(__name__)

ANSWER_INSTRUCTION = "Answer with Yes or No."

ASPECT_QUESTIONS = JUDGE_QUESTIONS  # from the one aspect table (lmcot.aspects)

_SYSTEM = (
    "You are a strict grader of rationales written for multi-hop questions. You are shown a "
    "question, its context and a rationale, and you answer one yes/no question about the rationale."
)
_SYSTEM_NO_CONTEXT = (
    "You are a strict grader of rationales written for questions. You are shown a question and a rationale, "
    "and you answer one yes/no question about the rationale."
)
# Token variants whose first token counts as "yes" / "no" for the in-process judge.
_YES_VARIANTS = ("Yes", "yes", " Yes", " yes", "YES", " YES")
_NO_VARIANTS = ("No", "no", " No", " no", "NO", " NO")
# Leading characters that can precede the verdict in a sampled answer ("**Yes**", "'yes'", "- Yes").
_LEADING_JUNK = re.compile(r"^[\W_]+")
# Sentencepiece / byte-level BPE space markers that providers may leave on returned tokens.
_SPACE_MARKERS = "\u2581\u0120"

# Endpoints (model, api_base) that returned no log-probabilities: probed once per process.
_NO_LOGPROBS: set[tuple[str, str]] = set()
_NO_LOGPROBS_LOCK = threading.Lock()
# Endpoints seen returning them: later scoring calls (every RL step) skip the one-call-alone probe.
_HAS_LOGPROBS: set[tuple[str, str]] = set()


def judge_messages(question: str, context: str, rationale: str, aspect: str) -> list[dict]:
    """Chat messages asking the judge about ``aspect`` of ``rationale``.

    The user turn shows ``Question:``, ``Context:`` (left out entirely for a task without one) and a
    ``Rationale:`` line, then the aspect question, and ends with exactly ``Answer with Yes or No.`` (the
    local test server keys on it)."""
    if aspect not in ASPECT_QUESTIONS:
        raise ValueError(f"unknown aspect {aspect!r}; aspects are {list(ASPECT_QUESTIONS)}")
    context_block = f"Context:\n{context.strip()}\n\n" if (context or "").strip() else ""
    user = (
        f"Question: {question.strip()}\n\n"
        f"{context_block}"
        f"Rationale: {rationale.strip()}\n\n"
        f"{ASPECT_QUESTIONS[aspect]} {ANSWER_INSTRUCTION}"
    )
    return [{"role": "system", "content": _SYSTEM if context_block else _SYSTEM_NO_CONTEXT},
            {"role": "user", "content": user}]


def _field(row: Any, key: str) -> str:
    # Rows may be plain dicts or dspy.Example objects.
    value = row.get(key) if isinstance(row, Mapping) or hasattr(row, "get") else getattr(row, key, None)
    return "" if value is None else str(value)


def _verdict(token: str) -> str | None:
    """"yes" / "no" when ``token`` (a returned token or a sampled answer's start) is that verdict."""
    norm = token.strip().strip(_SPACE_MARKERS).strip().lower()
    return norm if norm in ("yes", "no") else None


def answers_yes(text: str | None) -> bool:
    """Whether a sampled judge answer starts with "yes" (after quotes, asterisks and the like)."""
    return _LEADING_JUNK.sub("", (text or "").strip()).lower().startswith("yes")


def has_verdict(text: str | None) -> bool:
    """Whether a sampled judge answer starts with "yes" or "no" at all (else it is unusable)."""
    return _LEADING_JUNK.sub("", (text or "").strip()).lower().startswith(("yes", "no"))


def p_yes_from_logprobs(logprobs: Sequence[Any] | None) -> float | None:
    """P(yes) / (P(yes) + P(no)) from lm15 ``TokenLogprob``s (``.token``, ``.logprob``, ``.top``).

    Uses the first generated position whose candidates include a yes- or no-like token (normally
    the first token; later only when the judge opened with markup such as ``**``). None when no
    position has one, so the caller falls back to sampling."""
    import math

    for position in logprobs or ():
        # The chosen token may or may not be repeated in ``top``; count each token string once.
        candidates = {position.token: position.logprob}
        for top in getattr(position, "top", ()) or ():
            candidates.setdefault(top.token, top.logprob)
        mass = {"yes": 0.0, "no": 0.0}
        for token, logprob in candidates.items():
            verdict = _verdict(token)
            if verdict is not None:
                mass[verdict] += math.exp(logprob)
        total = mass["yes"] + mass["no"]
        if total > 0:
            return mass["yes"] / total
    return None


def answer_token_ids(tokenizer: Any) -> tuple[list[int], list[int]]:
    """Vocabulary ids whose token starts a "yes" / a "no" (first token of each spelling variant).

    An id that starts both (e.g. a bare space piece in a small BPE) says nothing and is dropped."""
    def first_ids(variants: Sequence[str]) -> set[int]:
        ids = set()
        for v in variants:
            enc = tokenizer.encode(v, add_special_tokens=False)
            if enc:
                ids.add(int(enc[0]))
        return ids

    yes, no = first_ids(_YES_VARIANTS), first_ids(_NO_VARIANTS)
    both = yes & no
    yes, no = sorted(yes - both), sorted(no - both)
    if not yes or not no:
        raise ValueError("the judge's tokenizer has no distinct first tokens for 'Yes' and 'No'")
    return yes, no


def hf_p_yes(engine: Any, prompts: Sequence[str]) -> list[float]:
    """P(yes) for each rendered prompt from an in-process model's next-token logits.

    ``engine`` is a ``lmcot.hf_engine.TransformersEngine``. Batched by ``engine.batch_size`` and
    tokenised exactly as the engine does at inference (same special-token and truncation rules).
    Causal models are left-padded with explicit position ids, so a padded row scores the same as
    alone; encoder-decoder models score the first decoder step after the decoder start token."""
    import inspect

    import torch

    model, tok = engine.model, engine.tokenizer
    yes_ids, no_ids = answer_token_ids(tok)
    seq2seq = bool(engine.is_encoder_decoder)
    keep_last = not seq2seq and "logits_to_keep" in inspect.signature(model.forward).parameters
    batch_size = max(1, int(getattr(engine, "batch_size", 8)))
    lock = getattr(engine, "model_lock", None) or threading.Lock()
    out: list[float] = []
    for start in range(0, len(prompts), batch_size):
        chunk = list(prompts[start:start + batch_size])
        with lock, torch.no_grad():
            enc = tokenize_prompts(tok, chunk, is_encoder_decoder=seq2seq, max_length=engine.max_input_tokens,
                                   padding=True, return_tensors="pt")
            enc = {k: v.to(engine.device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}
            if seq2seq:
                start_id = model.config.decoder_start_token_id
                if start_id is None:
                    start_id = model.generation_config.decoder_start_token_id
                dec = torch.full((len(chunk), 1), int(start_id), dtype=torch.long, device=engine.device)
                logits = model(**enc, decoder_input_ids=dec).logits[:, 0, :]
            else:
                positions = (enc["attention_mask"].cumsum(-1) - 1).clamp(min=0)
                extra = {"logits_to_keep": 1} if keep_last else {}
                logits = model(**enc, position_ids=positions, **extra).logits[:, -1, :]
            logits = logits.float()
            # P(yes) / (P(yes) + P(no)) = sigmoid(logsumexp(yes logits) - logsumexp(no logits)).
            p = torch.sigmoid(torch.logsumexp(logits[:, yes_ids], -1) - torch.logsumexp(logits[:, no_ids], -1))
        out.extend(float(x) for x in p.cpu())
    return out


def _endpoint(lm: dspy.LM) -> tuple[str, str]:
    return (str(lm.model), str(lm.kwargs.get("api_base") or lm.kwargs.get("base_url") or ""))


class JudgeScorer:
    """Scores rationales on the rationale-quality aspects with a judge LM (see the module doc).

    ``score(rows, aspects)`` returns one ``{aspect: score in [0, 1]}`` per row, in row order. An
    empty rationale scores 0.0 without a call."""

    def __init__(self, judge_lm: dspy.LM, samples: int = 5, concurrency: int = 8, temperature: float = 1.0,
                 max_tokens: int = 8):
        if samples < 1:
            raise ValueError("samples must be >= 1")
        self.lm = judge_lm
        self.samples = int(samples)
        self.concurrency = max(1, int(concurrency))
        self.temperature = float(temperature)
        # Small: only the first token or two decide; a few more let "**Yes**" through when sampling.
        self.max_tokens = int(max_tokens)

    # -- public ------------------------------------------------------------------------------
    def score(self, rows: Sequence[Any], aspects: Sequence[str], call_limit: Any = None) -> list[dict[str, float]]:
        """One ``{aspect: P(yes)}`` per row (rows have ``question``, ``context``, ``rationale``). With
        ``call_limit`` (``lmcot.parallel.CallLimit``) the HTTP calls run under that limit,
        shared with other calls made at the same time (an RL step's answer calls), instead of on
        ``concurrency`` threads of their own."""
        aspects = list(aspects)
        unknown = [a for a in aspects if a not in ASPECT_QUESTIONS]
        if unknown:
            raise ValueError(f"unknown aspect(s) {unknown}; aspects are {list(ASPECT_QUESTIONS)}")
        results: list[dict[str, float]] = [{a: 0.0 for a in aspects} for _ in rows]
        jobs: list[tuple[int, str, list[dict]]] = []
        for i, row in enumerate(rows):
            rationale = _field(row, "rationale")
            if not rationale.strip():
                continue  # nothing to judge: 0.0, and no call
            for aspect in aspects:
                jobs.append((i, aspect, judge_messages(_field(row, "question"), _field(row, "context"),
                                                       rationale, aspect)))
        if not jobs:
            return results
        from lmcot.hf_engine import hf_engine_of

        engine = hf_engine_of(self.lm)
        if engine is not None:
            from lmcot.prompting import render_prompt

            prompts = [render_prompt(engine.tokenizer, msgs, engine.is_encoder_decoder) for _, _, msgs in jobs]
            scores = hf_p_yes(engine, prompts)
        else:
            scores = self._http_scores([msgs for _, _, msgs in jobs], call_limit)
        for (i, aspect, _), value in zip(jobs, scores):
            results[i][aspect] = value
        return results

    async def ascore(self, rows: Sequence[Any], aspects: Sequence[str]) -> list[dict[str, float]]:
        """``score`` off the event loop (for async RL reward functions). Runs the same threaded,
        cached calls, so sync and async callers share cache entries; the context is copied."""
        return await asyncio.to_thread(self.score, rows, aspects)

    def supports_logprobs(self) -> bool:
        """False once this judge's endpoint is known to return no log-probabilities."""
        if _endpoint(self.lm) in _NO_LOGPROBS:
            return False
        try:
            # DSPy knows providers that refuse the option (Anthropic, Ollama): skip the probe there.
            return "logprobs" in self.lm.supported_params
        except Exception:  # unknown provider metadata: probe and see
            return True

    # -- HTTP judge ----------------------------------------------------------------------------
    def _request(self, messages: list[dict], *, logprobs: bool):
        from dspy.lm15 import Config, Message, Request

        system = "\n\n".join(m["content"] for m in messages if m["role"] == "system") or None
        turns = tuple(Message.user(m["content"]) if m["role"] == "user" else Message.assistant(m["content"])
                      for m in messages if m["role"] != "system")
        if logprobs:
            # Temperature 0: the returned distribution is what matters, and the cached call is stable.
            config = Config(max_tokens=self.max_tokens, temperature=0.0, logprobs=5)
        else:
            config = Config(max_tokens=self.max_tokens, temperature=self.temperature)
        return Request(model=self.lm.model, messages=turns, system=system, config=config)

    def _probe(self, messages: list[dict]) -> float | None:
        """P(yes) from one log-probability call, or None (none came back, or no yes/no among them)."""
        if not self.supports_logprobs():
            return None
        from dspy.utils.exceptions import LMUnsupportedFeatureError

        from lmcot.reply_cache import UnusableReply, parsed_reply

        try:
            # Log-probabilities with no yes/no among them: a garbled reply, asked again, never cached.
            response = parsed_reply(lambda: self.lm(self._request(messages, logprobs=True)), what="judge reply",
                                    reject=lambda r: r.logprobs is not None and p_yes_from_logprobs(r.logprobs) is None)
        except LMUnsupportedFeatureError:
            self._mark_no_logprobs("the provider refuses the logprobs option")
            return None
        except UnusableReply:
            return None  # sample instead
        if response.logprobs is None:
            self._mark_no_logprobs("the server returned none")
            return None
        _HAS_LOGPROBS.add(_endpoint(self.lm))
        return p_yes_from_logprobs(response.logprobs)

    def _sample(self, job: tuple[list[dict], int]) -> bool:
        from lmcot.reply_cache import UnusableReply, parsed_reply

        messages, rollout = job
        # A distinct rollout_id per sample: identical requests, separate cache entries. A reply that
        # is neither yes nor no is asked again and never cached; if it stays so, it counts as "no".
        try:
            response = parsed_reply(lambda: self.lm(self._request(messages, logprobs=False), rollout_id=rollout),
                                    reject=lambda r: not has_verdict(r.text), what="judge verdict")
        except UnusableReply as exc:
            log.warning("judge %s gave no yes/no verdict after retries (%s); counted as no", self.lm.model, exc)
            return False
        return answers_yes(response.text)

    def _http_scores(self, all_messages: list[list[dict]], call_limit: Any = None) -> list[float]:
        from lmcot.parallel import map_concurrently

        # Phase 1: log-probabilities where the endpoint may have them. The first question goes
        # alone, so an endpoint without them costs one wasted call, not one per question.
        if _endpoint(self.lm) in _HAS_LOGPROBS:
            scores: list[float | None] = map_concurrently(self._probe, all_messages, self.concurrency,
                                                          limit=call_limit)
        else:
            probe = call_limit.bind(self._probe) if call_limit is not None else self._probe
            first = [probe(all_messages[0])]
            scores = first + map_concurrently(self._probe, all_messages[1:], self.concurrency, limit=call_limit)
        # Phase 2: sample the rest, flattened to (question, sample) so every call runs concurrently.
        todo = [k for k, s in enumerate(scores) if s is None]
        if todo:
            jobs = [(all_messages[k], r) for k in todo for r in range(self.samples)]
            yes = map_concurrently(self._sample, jobs, self.concurrency, limit=call_limit)
            for n, k in enumerate(todo):
                scores[k] = sum(yes[n * self.samples:(n + 1) * self.samples]) / self.samples
        return [float(s) for s in scores]

    def _mark_no_logprobs(self, why: str) -> None:
        key = _endpoint(self.lm)
        with _NO_LOGPROBS_LOCK:
            if key in _NO_LOGPROBS:
                return
            _NO_LOGPROBS.add(key)
        log.info("judge %s gives no log-probabilities (%s): scoring by the share of %d sampled answers "
                 "at temperature %.2f", self.lm.model, why, self.samples, self.temperature)


__all__ = [
    "ANSWER_INSTRUCTION",
    "ASPECT_QUESTIONS",
    "JudgeScorer",
    "answer_token_ids",
    "answers_yes",
    "hf_p_yes",
    "judge_messages",
    "p_yes_from_logprobs",
]

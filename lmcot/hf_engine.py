"""An in-process Hugging Face model as a DSPy 3.4 engine (``dspy.LM(name, engine=TransformersEngine(...))``).

DSPy keeps caching, retries and history; this engine only turns one ``dspy.lm15.Request`` into one
``Response``. DSPy's ``Evaluate`` / ``Predict.batch`` call an LM from many threads at once: rather
than run N ``generate`` calls behind a lock, concurrent requests are *micro-batched*: the first
waiting thread becomes the leader, gathers requests until the batch is full or no caller is on its
way in (see ``_lead``), picks requests of similar length, and runs one padded ``generate`` for them.

Causal LMs (Llama, Qwen2.5, SmolLM2) and encoder-decoder LMs (FLAN-T5) are both supported.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lmcot.engine_base import SharedEngine
from lmcot.memo import folder_key, memo_key, remember_text, remembered_text
from lmcot.model_loading import ModelSource, load_model_and_tokenizer, load_tokenizer, weights_fingerprint
from lmcot.prompting import render_prompt, tokenize_prompts

log = logging.getLogger(__name__)

# A reply's ``provider_data`` carries ``{ENGINE_DATA: {GENERATE_SECONDS: s}}``: its share of the generate
# time (read by lmcot.usage.engine_seconds).
ENGINE_DATA = "lmcot"
GENERATE_SECONDS = "generate_seconds"


@dataclass
class Job:
    """One queued generation request: its rendered prompt and generate()'s settings."""

    prompt: str
    params: tuple
    future: Future = field(default_factory=Future)
    queued_at: float = field(default_factory=time.monotonic)
    seconds: float = 0.0  # this request's share of its batch's generate time


class TransformersEngine(SharedEngine):
    """DSPy engine over a local transformers model. Thread-safe; micro-batches concurrent calls."""

    def __init__(self, source: ModelSource, *, device: str = "auto", dtype: str = "auto", batch_size: int = 8,
                 max_input_tokens: int = 2048, batch_wait_ms: float = 3.0, expected_fingerprint: str | None = None,
                 repetition_penalty: float = 1.0, no_repeat_ngram_size: int = 0):
        # The model as resolved once (lmcot.model_loading.check_model_source / resolve_source; build_lm
        # resolves a config's): the weights, tokenizer, architecture and memo keys all come from it, and
        # its revision and trust_remote_code with it.
        if not isinstance(source, ModelSource):
            raise TypeError(f"TransformersEngine takes a resolved model (lmcot.model_loading.resolve_source), "
                            f"not {type(source).__name__}")
        self.source = source
        self.model_id = self.source.setting
        # Engine settings, not request fields: DSPy refuses generation options it does not know.
        self.repetition_penalty, self.no_repeat_ngram_size = float(repetition_penalty), int(no_repeat_ngram_size)
        self.device_setting, self.dtype_setting = device, dtype
        self.batch_size, self.max_input_tokens = batch_size, max_input_tokens
        self.trust_remote_code, self.revision = self.source.trust_remote_code, self.source.revision
        self.batch_wait_s = batch_wait_ms / 1000.0
        self._loaded: tuple | None = None  # (model, tokenizer, is_encoder_decoder), see _load
        # What outlives release(): the tokenizer (counting tokens needs no weights).
        self._tokenizer = None
        self._load_lock = threading.Lock()
        self._expected_fingerprint = expected_fingerprint
        # The weights are loaded when the model is first needed: a rerun answered from DSPy's cache
        # never loads them. Only the fingerprint is needed up front (it names the LM in every cache
        # key); it is remembered per checkpoint files (lmcot.memo), else computed from the weights.
        self._memo_key = memo_key(self.source.files, device, dtype, self.trust_remote_code, self.revision)
        remembered = remembered_text("fingerprints", self._memo_key)
        if remembered is not None and expected_fingerprint in (None, remembered):
            self.fingerprint = remembered
        else:
            self._load()
        self._queue: list[Job] = []
        self._cond = threading.Condition()
        self._leader_active = False
        self._arriving = 0  # callers inside complete() whose request is not queued yet
        # Held while the weights run (generate here, log-prob scoring in the judge): one at a time.
        self.model_lock = threading.Lock()
        self._warned_truncation = False
        # How the calls were batched (lmcot serve's /health, the serving bench): generates run, requests in them.
        self.batches_run, self.batched_requests = 0, 0

    # -- lazy loading -----------------------------------------------------------------------
    def _load(self) -> tuple:
        with self._load_lock:
            if self._loaded is not None:
                return self._loaded
            loaded = load_model_and_tokenizer(self.source, device=self.device_setting, dtype=self.dtype_setting)
            if self._tokenizer is not None:  # one tokenizer object per engine, before and after release()
                loaded = (loaded[0], self._tokenizer, loaded[2])
            fingerprint = weights_fingerprint(loaded[0])
            expected = self._expected_fingerprint or getattr(self, "fingerprint", None)
            if expected and expected != fingerprint:
                from lmcot.errors import ModelLoadError

                raise ModelLoadError(
                    f"{self.model_id}: the weights changed since this program was saved (fingerprint {fingerprint}, "
                    f"program.json says {expected}); restore the folder's weights or compile it again"
                )
            self.fingerprint = fingerprint
            remember_text("fingerprints", self._memo_key, fingerprint)
            self._loaded = loaded
            return loaded

    def release(self) -> bool:
        """Drop the weights between uses (the compiler calls it before a training stage, which loads
        its own copy); the tokenizer and fingerprint stay, and the next generate loads the weights
        again, checked against the fingerprint. True when weights were dropped."""
        with self._load_lock:
            if self._loaded is None:
                return False
            self._tokenizer = self._loaded[1]
            self._loaded = None
        from lmcot.memory import free_memory

        free_memory()
        return True

    @property
    def loaded(self) -> bool:
        return self._loaded is not None

    @property
    def model(self):
        return self._load()[0]

    @property
    def tokenizer(self):
        """The tokenizer; loaded alone (no weights) when nothing has needed the weights yet."""
        loaded = self._loaded
        if loaded is not None:
            return loaded[1]
        with self._load_lock:
            if self._loaded is not None:
                return self._loaded[1]
            if self._tokenizer is None:
                self._tokenizer = load_tokenizer(self.source)
            return self._tokenizer

    @property
    def is_encoder_decoder(self) -> bool:
        loaded = self._loaded
        if loaded is not None:
            return loaded[2]
        return self.source.is_encoder_decoder

    @property
    def device(self):
        return next(self.model.parameters()).device

    @property
    def files_key(self) -> str | None:
        """A key for this checkpoint's files (tokenizer included), or None for a hub id."""
        return folder_key(self.source.files)

    # -- DSPy engine protocol -------------------------------------------------------------
    def complete(self, request):
        from dspy.lm15 import Message, Response, TextPart, Usage

        from lmcot._dspy_reaches import validate_request

        validate_request(request)
        messages = []
        if request.system is not None:
            system = request.system if isinstance(request.system, str) else "".join(p.text for p in request.system)
            messages.append({"role": "system", "content": system})
        messages.extend({"role": m.role, "content": m.text or ""} for m in request.messages)
        cfg = request.config
        params = (cfg.temperature or 0.0, cfg.top_p, cfg.top_k, cfg.max_tokens or 256, cfg.seed, tuple(cfg.stop or ()))
        with self._cond:
            self._arriving += 1  # a leader waits for this request rather than start without it
        try:
            job = Job(render_prompt(self.tokenizer, messages, self.is_encoder_decoder), params)
        except BaseException:
            with self._cond:
                self._arriving -= 1
                self._cond.notify_all()
            raise
        text, n_in, n_out, finish = self._submit(job, arriving=True)
        # The generate time travels with the reply (and with it into DSPy's cache): lmcot.usage counts a
        # method's small-LM seconds from its replies, cached ones included, with no hook on this object.
        return Response(id=None, model=self.model_id, message=Message.assistant([TextPart(text)]), finish_reason=finish,
                        usage=Usage(input_tokens=n_in, output_tokens=n_out, total_tokens=n_in + n_out),
                        provider_data={ENGINE_DATA: {GENERATE_SECONDS: round(job.seconds, 6)}})

    def dump_state(self) -> dict[str, Any]:
        return {"model": self.model_id, "device": self.device_setting, "dtype": self.dtype_setting,
                "batch_size": self.batch_size, "max_input_tokens": self.max_input_tokens,
                "trust_remote_code": self.trust_remote_code, "revision": self.revision,
                "expected_fingerprint": self.fingerprint, "repetition_penalty": self.repetition_penalty,
                "no_repeat_ngram_size": self.no_repeat_ngram_size}

    @classmethod
    def load_state(cls, state: dict[str, Any]) -> TransformersEngine:
        from lmcot.model_loading import resolve_source

        state = dict(state)
        source = resolve_source(state.pop("model"), trust_remote_code=state.pop("trust_remote_code", False),
                                revision=state.pop("revision", None))
        return cls(source, **state)

    # -- micro-batching -------------------------------------------------------------------
    def _submit(self, job: Job, arriving: bool = False):
        with self._cond:
            self._queue.append(job)
            if arriving:
                self._arriving -= 1
            self._cond.notify_all()
        while not job.future.done():
            with self._cond:
                if job.future.done():
                    break
                if self._leader_active:
                    self._cond.wait(timeout=0.05)
                    continue
                self._leader_active = True
            try:
                self._lead()
            finally:
                with self._cond:
                    self._leader_active = False
                    self._cond.notify_all()
        return job.future.result()

    def _lead(self) -> None:
        # Gather until two batches queue (to pick one of similar lengths) or none arrived for batch_wait_s
        # with no caller on its way in: a fixed wait from the start splits a burst of callers unevenly.
        with self._cond:
            quiet_until, seen = time.monotonic() + self.batch_wait_s, len(self._queue)
            while len(self._queue) < 2 * self.batch_size:
                now = time.monotonic()
                if len(self._queue) != seen:
                    quiet_until, seen = now + self.batch_wait_s, len(self._queue)
                if self._arriving == 0 and now >= quiet_until:
                    break
                self._cond.wait(timeout=max(self.batch_wait_s, 1e-4) if self._arriving else max(0.0, quiet_until - now))
            if not self._queue:
                return
            batch = self._pick_batch()
            for j in batch:
                self._queue.remove(j)
        try:
            # params is (temperature, top_p, top_k, max_tokens, seed, stop): generate's positional order.
            start = time.perf_counter()
            outputs = self.generate([j.prompt for j in batch], *batch[0].params)
            # One padded generate serves the batch: each request costs an equal share of it.
            share = (time.perf_counter() - start) / len(batch)
            self.batches_run, self.batched_requests = self.batches_run + 1, self.batched_requests + len(batch)
            for j, out in zip(batch, outputs):
                j.seconds = share
                j.future.set_result(out)
        except BaseException as exc:  # every waiter gets the failure, not a hang
            for j in batch:
                if not j.future.done():
                    j.future.set_exception(exc)

    # A request waiting longer than this goes into the next batch whatever its length.
    MAX_WAIT_FOR_SIMILAR_S = 1.0

    def _pick_batch(self) -> list[Job]:
        return pick_batch(self._queue, self.batch_size, time.monotonic(), self.MAX_WAIT_FOR_SIMILAR_S)

    # -- generation -----------------------------------------------------------------------
    def generate(self, prompts: list[str], temperature: float = 0.0, top_p: float | None = None,
                 top_k: int | None = None, max_new_tokens: int = 256, seed: int | None = None,
                 stop: tuple[str, ...] = (), num_return_sequences: int = 1) -> list[tuple[str, int, int, str]]:
        """One padded ``generate`` for all prompts. Returns ``(text, input_tokens, output_tokens,
        finish_reason)`` per prompt (``num_return_sequences`` consecutive rows per prompt)."""
        import torch

        tok = self.tokenizer
        # The model lock also covers tokenization: a fast tokenizer shared by threads (the judge uses
        # this engine's tokenizer too) fails with "Already borrowed" when two use it at once.
        with self.model_lock:
            enc = tokenize_prompts(tok, prompts, is_encoder_decoder=self.is_encoder_decoder,
                                   max_length=self.max_input_tokens, padding=True, return_tensors="pt")
            # Only a batch that reached the limit can have been cut; check those prompts exactly.
            if (not self._warned_truncation and enc["input_ids"].shape[1] >= self.max_input_tokens
                    and any(len(ids) > self.max_input_tokens for ids in tokenize_prompts(
                        tok, prompts, is_encoder_decoder=self.is_encoder_decoder, max_length=None).input_ids)):
                log.warning("prompts longer than small_lm.max_input_tokens=%d were cut from the left",
                            self.max_input_tokens)
                self._warned_truncation = True
        enc = {k: v.to(self.device) for k, v in enc.items()}
        sample = temperature > 0
        # The repetition controls come from the config (small_lm.repetition_penalty, 1.0 = off), never
        # from a checkpoint's generation_config (e.g. Qwen2.5's 1.05), so that inference samples from
        # the same distribution as the RL rollouts, which take the same setting.
        gen_kwargs: dict[str, Any] = {"max_new_tokens": max_new_tokens, "do_sample": sample,
                                      "num_return_sequences": num_return_sequences,
                                      "pad_token_id": tok.pad_token_id, "repetition_penalty": self.repetition_penalty,
                                      "no_repeat_ngram_size": self.no_repeat_ngram_size}
        if sample:
            gen_kwargs.update(temperature=temperature, top_p=top_p if top_p is not None else 1.0,
                              top_k=top_k if top_k is not None else 0)
        else:
            # Greedy: clear sampling defaults a checkpoint's generation_config may carry.
            gen_kwargs.update(temperature=None, top_p=None, top_k=None)
        with self.model_lock, torch.no_grad():
            if seed is not None:
                torch.manual_seed(seed)
            out = self.model.generate(**enc, **gen_kwargs)
        new_tokens = out if self.is_encoder_decoder else out[:, enc["input_ids"].shape[1]:]
        in_lens = enc["attention_mask"].sum(dim=1).tolist()
        rows = [[int(t) for t in ids if int(t) != tok.pad_token_id] for ids in new_tokens.tolist()]
        with self.model_lock:
            texts = tok.batch_decode(rows, skip_special_tokens=True)
        results = []
        for row, (ids, text) in enumerate(zip(rows, texts)):
            finish = "length" if len(ids) >= max_new_tokens else "stop"
            for s in stop:
                if s and s in text:
                    text, finish = text[: text.index(s)], "stop"
            results.append((text.strip(), int(in_lens[row // num_return_sequences]), len(ids), finish))
        return results

    @property
    def settings_tag(self) -> str:
        """Generation settings that change outputs but are not in DSPy's cache key (which holds the
        LM's name and the request): part of the name, so changing them never returns cached outputs
        of the old setting. Empty at the defaults, so names (and caches) stay as they were."""
        tag = f"+rp{self.repetition_penalty:g}" if self.repetition_penalty != 1.0 else ""
        return tag + (f"+nrng{self.no_repeat_ngram_size}" if self.no_repeat_ngram_size else "")

    @property
    def name_hint(self) -> str:
        base = Path(self.model_id.rstrip("/")).name or self.model_id
        return f"{base}@{self.fingerprint}{self.settings_tag}"


def pick_batch(queue: list[Job], batch_size: int, now: float, max_wait_s: float) -> list[Job]:
    """The next batch from ``queue`` (oldest first): up to ``batch_size`` requests with the oldest one's
    generation settings and the closest prompt lengths. Left padding to the longest prompt costs
    prefill (most of a CPU generate), so a batch of similar lengths wastes least. The oldest request
    is always in the batch once it has waited ``max_wait_s``, so no request waits for ever."""
    oldest = queue[0]
    temperature, seed = oldest.params[0], oldest.params[4]
    # A seeded sampled request runs alone: one seed for a whole batch would make its output depend
    # on which other requests happened to share the batch.
    if seed is not None and temperature > 0:
        return [oldest]
    same = sorted((j for j in queue if j.params == oldest.params), key=lambda j: len(j.prompt))
    n = batch_size
    if len(same) <= n:
        return same
    starts = range(len(same) - n + 1)
    if now - oldest.queued_at > max_wait_s:
        at = same.index(oldest)
        starts = range(max(0, at - n + 1), min(at, len(same) - n) + 1)
    start = min(starts, key=lambda s: len(same[s + n - 1].prompt) - len(same[s].prompt))
    return same[start:start + n]


def hf_engine_of(lm: Any) -> TransformersEngine | None:
    """The ``TransformersEngine`` behind a ``dspy.LM``, or None for an HTTP model."""
    engine = getattr(lm, "engine", None)
    return engine if isinstance(engine, TransformersEngine) else None

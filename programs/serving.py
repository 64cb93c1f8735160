"""A compiled program as an OpenAI-compatible chat model: the library half of ``lmcot serve``.

    service = ProgramService(LMGuidedCoT.from_folder("runs/quickstart", cfg), cfg, model_id="quickstart")
    request = service.parse(body)            # ServeError (400, 404) for a request it cannot take
    reply = service.run(request)             # blocking: the rationale(s), then the large LM's answer
    service.completion(request, reply)       # the OpenAI ``chat.completion`` object

A request is one question: the last user message (earlier turns and system messages are not read;
the program's prompts are its own), with an optional top-level ``context`` (a string, or a list of
passages joined one per line, as ``lmcot.data`` joins a dataset's passages). ``run`` does what
``LMGuidedCoT.forward`` does: k rationales on the small LM, then the large LM's answer per rationale
and the vote (or one answer from the best-scored rationale, ``select="quality"``). k and ``select``
are the program's; a request may ask for fewer samples (``num_samples``) or another aspect to select by,
never for more samples than the program's configured number or a costlier selection.

Concurrency is the caller's threads (``commands/serve.py`` runs each request on a pool of
``request_workers`` threads): an in-process small LM micro-batches the rationale calls of requests
that arrive together (``lmcot.hf_engine``), and the large-LM answer calls of all requests together
are bounded by ``eval.concurrency`` (one ``CallLimit``). ``commands/serve.py`` wires this to HTTP.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

from lmcot.config import LMCoTConfig
from lmcot.parallel import CallLimit

log = logging.getLogger(__name__)

# Default cap on a request body. The token check (the small LM's max_input_tokens) is the real bound;
# this one keeps a client from making the server read and parse an arbitrarily large body first.
MAX_REQUEST_BYTES = 1_000_000


class ServeError(Exception):
    """A request that fails, as the OpenAI API reports it: HTTP status + ``{"error": {...}}``."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error", code: str | None = None,
                 param: str | None = None):
        from lmcot.redact import redact

        super().__init__(redact(message))
        self.status, self.type, self.code, self.param = status, type, code, param

    @property
    def message(self) -> str:
        return str(self)

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "code": self.code, "param": self.param}}


def bad_request(message: str, code: str = "invalid_request", param: str | None = None) -> ServeError:
    return ServeError(400, message, code=code, param=param)


@dataclass
class ChatRequest:
    question: str
    context: str
    num_samples: int
    select: str
    stream: bool = False
    include_usage: bool = False
    id: str = field(default_factory=lambda: f"chatcmpl-{uuid.uuid4().hex}")
    created: int = field(default_factory=lambda: int(time.time()))


@dataclass
class ServedReply:
    answer: str
    rationale: str
    rationales: list[str]
    answers: list[str]
    tokens: dict[str, dict[str, int]]  # per model: {"prompt_tokens", "completion_tokens"}

    def usage(self) -> dict[str, int]:
        prompt = sum(t["prompt_tokens"] for t in self.tokens.values())
        completion = sum(t["completion_tokens"] for t in self.tokens.values())
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _text(content: Any) -> str | None:
    """An OpenAI message content (a string or a list of parts) as text; None if it is neither."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(p, dict) for p in content):
        return "".join(str(p.get("text", "")) for p in content if p.get("type", "text") == "text")
    return None


class ProgramService:
    """One loaded ``LMGuidedCoT`` answering chat requests; thread-safe (see the module docstring)."""

    def __init__(self, program, config: LMCoTConfig, *, model_id: str, max_request_bytes: int = MAX_REQUEST_BYTES):
        from lmcot.hf_engine import hf_engine_of

        self.program, self.config, self.model_id = program, config, model_id
        self.max_request_bytes = int(max_request_bytes)
        self.answer_limit = CallLimit(config.eval.concurrency)
        program.answer_limit = self.answer_limit
        self.engine = hf_engine_of(program.small_lm)
        self._variants: dict[tuple[int, str], Any] = {(program.num_samples, program.select): program}
        self._variants_lock = threading.Lock()
        self._tokenizer, self._tokenizer_lock = None, threading.Lock()

    # -- set-up -------------------------------------------------------------------------------
    @property
    def request_workers(self) -> int:
        """Threads for requests: two batches of the in-process small LM queued (one generating, the next
        filling, as the evaluation loop keeps) plus the large-LM calls in flight; with a small LM behind
        a server, as many rationale calls in flight as answer calls."""
        first = 2 * self.engine.batch_size if self.engine is not None else self.config.eval.concurrency
        return first + self.config.eval.concurrency

    def warm_up(self) -> None:
        """Load what the first request would wait for: the small LM's weights and a tokenizer of its own
        for the length check (the engine's is not shared across threads)."""
        from lmcot.http_lm import import_litellm

        import_litellm()
        if self.engine is not None:
            from lmcot.model_loading import load_tokenizer

            self.engine.model  # noqa: B018 - loads the weights now, not on the first request
            self._tokenizer = load_tokenizer(self.engine.source)  # the engine's resolved model, not resolved again

    def upstream(self) -> str:
        """The large LM, named as errors show it: model and server(s), credentials redacted."""
        lm = self.config.large_lm
        return f"{lm.model} at {lm.endpoint_shown()}" if lm.api_base else lm.model

    def models(self) -> dict[str, Any]:
        return {"object": "list", "data": [{"id": self.model_id, "object": "model", "created": 0, "owned_by": "lmcot"}]}

    # -- requests -----------------------------------------------------------------------------
    def parse(self, body: bytes) -> ChatRequest:
        """A chat-completions body -> ChatRequest, or a ServeError naming what is wrong."""
        if len(body) > self.max_request_bytes:
            raise bad_request(f"the request body is {len(body)} bytes; this server takes at most "
                              f"{self.max_request_bytes}", "request_too_large")
        try:
            data = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise bad_request(f"the body is not valid JSON ({exc})", "invalid_json") from None
        if not isinstance(data, dict):
            raise bad_request("the body must be a JSON object", "invalid_json")
        model = data.get("model")
        if model != self.model_id:
            raise ServeError(404, f"model {model!r} is not served here; this server serves {self.model_id!r}",
                             code="model_not_found", param="model")
        messages = data.get("messages")
        if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
            raise bad_request("'messages' must be a list of message objects", param="messages")
        users = [m for m in messages if m.get("role") == "user"]
        question = _text(users[-1].get("content")) if users else None
        if question is None or not question.strip():
            raise bad_request("no question: the last user message must have text content", "missing_question",
                              "messages")
        context = data.get("context", "")
        if isinstance(context, list) and all(isinstance(c, str) for c in context):
            context = "\n".join(c.strip() for c in context)
        elif not isinstance(context, str):
            raise bad_request("'context' must be a string or a list of strings", param="context")
        if data.get("n", 1) not in (1, None):
            raise bad_request("'n' must be 1: a program gives one answer (use num_samples for self-consistency)",
                              param="n")
        stream_options = data.get("stream_options") or {}
        return ChatRequest(question=question.strip(), context=context.strip(),
                           num_samples=self._num_samples(data.get("num_samples")), select=self._select(data.get("select")),
                           stream=bool(data.get("stream", False)),
                           include_usage=bool(isinstance(stream_options, dict) and stream_options.get("include_usage")))

    def _num_samples(self, asked: Any) -> int:
        cap = self.program.num_samples
        if asked is None:
            return cap
        if isinstance(asked, bool) or not isinstance(asked, int) or not 1 <= asked <= cap:
            raise bad_request(f"'num_samples' must be an integer from 1 to {cap} (this program's eval.num_samples)",
                              param="num_samples")
        return asked

    def _select(self, asked: Any) -> str:
        """A request may pick another aspect to select by (``quality`` <-> ``quality:<aspect>``: the same
        scorer, one answer call), never a costlier way: a voting program does not score rationales (a
        judge may be paid), a quality program does not ask the large LM once per rationale."""
        from lmcot.aspects import parse_select

        own = self.program.select
        if asked is None or asked == own:
            return own
        try:
            same_cost = isinstance(asked, str) and parse_select(asked) is not None and own != "vote" and asked != "vote"
        except ValueError:
            same_cost = False
        if not same_cost:
            allowed = "'vote'" if own == "vote" else "'quality' or 'quality:<aspect>'"
            raise bad_request(f"'select' must be {allowed} for this program (its own is {own!r})", param="select")
        return asked

    def check_length(self, request: ChatRequest) -> None:
        """400 when the small LM's prompt for this question would not fit ``small_lm.max_input_tokens``
        (the engine would cut it from the left, losing context without a word)."""
        if self._tokenizer is None:
            return  # a small LM behind a server: its own limit answers
        from lmcot.programs.adapter import rationale_messages
        from lmcot.prompting import render_prompt, tokenize_prompts

        encoder_decoder = self.engine.is_encoder_decoder
        # The program's own signature (its rationale form, its loaded instructions) and demos: the prompt it sends.
        rationalize = self.program.rationalize
        messages = rationale_messages(request.question, request.context, rationalize.signature,
                                      demos=rationalize.demos)
        prompt = render_prompt(self._tokenizer, messages, encoder_decoder)
        with self._tokenizer_lock:  # a fast tokenizer used by two threads at once fails ("Already borrowed")
            ids = tokenize_prompts(self._tokenizer, [prompt], is_encoder_decoder=encoder_decoder, max_length=None)
        n = len(ids["input_ids"][0])
        if n > self.engine.max_input_tokens:
            raise bad_request(f"question and context make a {n}-token prompt for the small LM; it takes at most "
                              f"{self.engine.max_input_tokens} (small_lm.max_input_tokens)", "context_length_exceeded")

    def _variant(self, num_samples: int, select: str):
        """The program with fewer samples or another selection (same LMs and state), built once."""
        key = (num_samples, select)
        with self._variants_lock:
            if key not in self._variants:
                from lmcot._dspy_reaches import state_without_lms

                base = self.program
                # The base's rationale form: a compiled program's own (its program.json), not the config's.
                variant = type(base).from_config(base.small_lm, base.large_lm, self.config, num_samples=num_samples,
                                                 sample_temperature=base.sample_temperature, select=select,
                                                 rationale_form=base.rationale_form)
                variant.load_state(state_without_lms(base))
                variant.rationalize.lm, variant.answer.lm = base.small_lm, base.large_lm
                variant.answer_limit = self.answer_limit
                if select != "vote" and base.scorer is not None:
                    variant.scorer = base.scorer  # one scorer (and its models) for every variant
                self._variants[key] = variant
            return self._variants[key]

    def run(self, request: ChatRequest, on_rationale: Callable[[str], None] | None = None) -> ServedReply:
        """Answer one request (blocking). ``on_rationale(text)`` is called as soon as the rationale the
        reply will show is known: right after the small LM wrote it when there is one sample, after the
        selection otherwise. Errors: ServeError 400 (too long), 502 (the large LM failed), 500 (other)."""
        from lmcot.programs.lm_guided_cot import AnswerCallError
        from lmcot.redact import redact
        from lmcot.usage import tokens_spent

        self.check_length(request)
        program = self._variant(request.num_samples, request.select)
        with tokens_spent() as spent:
            try:
                rationales = program.write_rationales(request.question, request.context, request.num_samples)
            except Exception as exc:  # noqa: BLE001 - any failure of the small LM is this request's 500
                raise ServeError(500, f"the small LM failed: {type(exc).__name__}: {_first_line(exc)}",
                                 type="server_error", code="small_lm_failed") from exc
            if on_rationale is not None and len(rationales) == 1:
                on_rationale(rationales[0])
            try:
                pred = program.answer_from(request.question, request.context, rationales)
            except AnswerCallError as exc:
                cause = exc.__cause__ or exc
                # The upstream goes last: a URL runs to the next space, so no punctuation is glued to it.
                raise ServeError(502, f"the large LM failed: {type(cause).__name__}: {_first_line(cause)}; large LM: "
                                 f"{self.upstream()}", type="upstream_error", code="large_lm_failed") from exc
        if on_rationale is not None and len(rationales) > 1:
            on_rationale(pred.rationale)
        return ServedReply(answer=redact(str(pred.answer)), rationale=str(pred.rationale),
                           rationales=list(pred.rationales), answers=list(pred.get("answers") or [pred.answer]),
                           tokens=spent.by_model)

    # -- replies ------------------------------------------------------------------------------
    def completion(self, request: ChatRequest, reply: ServedReply) -> dict[str, Any]:
        """The OpenAI ``chat.completion`` object; ``lmcot`` (an extra field clients ignore) keeps every
        sampled rationale and answer and the tokens of each LM."""
        message = {"role": "assistant", "content": reply.answer, "reasoning_content": reply.rationale}
        return {"id": request.id, "object": "chat.completion", "created": request.created, "model": self.model_id,
                "choices": [{"index": 0, "message": message, "finish_reason": "stop", "logprobs": None}],
                "usage": reply.usage(),
                "lmcot": {"rationales": reply.rationales, "answers": reply.answers, "tokens": reply.tokens}}

    def chunk(self, request: ChatRequest, delta: dict[str, Any] | None, finish_reason: str | None = None) -> dict:
        """One ``chat.completion.chunk`` (``delta=None``: the usage chunk, with no choices)."""
        out = {"id": request.id, "object": "chat.completion.chunk", "created": request.created, "model": self.model_id,
               "choices": [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish_reason,
                                                     "logprobs": None}]}
        return out


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""

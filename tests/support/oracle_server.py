"""An OpenAI-compatible chat-completions server on 127.0.0.1, for tests and the offline quickstart.

It stands in for the large LM: a real HTTP server, so litellm / DSPy exercise their whole client
path (serialisation, retries, `n`, logprobs) exactly as against a hosted API. Only the stdlib is
used. What it answers is decided by a *responder* callable; `OracleResponder` (see
`support.oracle_responder`) plays a scripted large LM that knows the gold data.

    with OracleServer(OracleResponder(examples)) as srv:
        lm = dspy.LM("openai/oracle", api_base=srv.url, api_key="sk-test", engine="litellm")

CLI (quickstart): `PYTHONPATH=tests python -m support.oracle_server --data FILE.json --port 8765`.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from support.oracle_responder import OracleResponder, load_examples, message_text

ResponderResult = str | dict | list
Responder = Callable[[dict], ResponderResult]

_CHAT_PATHS = {"/v1/chat/completions", "/chat/completions"}
_MODEL_PATHS = {"/v1/models", "/models"}
_ERROR_TYPES = {400: "invalid_request_error", 404: "not_found_error", 429: "rate_limit_error"}
# Fake "tokens": runs of non-space with their leading space, so joining them gives the text back.
_TOKEN_RE = re.compile(r"\s*\S+|\s+")
_FILLER_ALTERNATIVES = ("The", "No", "Yes", "I", "It")


def tokenize(text: str) -> list[str]:
    """The server's notion of tokens (whitespace words); used for usage, max_tokens, logprobs."""
    return _TOKEN_RE.findall(text)


@dataclass
class RequestRecord:
    """One request as seen by the server. The Authorization value itself is never stored."""

    method: str
    path: str
    body: dict | None
    has_auth: bool
    status: int = 0


@dataclass
class _Choice:
    text: str
    logprobs: Any = None  # None | {"content": [...]} (verbatim) | {token: probability}
    finish_reason: str = "stop"


def _choices_from(result: ResponderResult, n: int) -> list[_Choice]:
    """Normalise a responder result (str | dict | list of either) into exactly `n` choices."""
    items = result if isinstance(result, list) else [result]
    if not items:
        raise ValueError("responder returned an empty list")
    out = []
    for i in range(n):
        item = items[i % len(items)]  # a single answer is repeated for every choice
        if isinstance(item, str):
            out.append(_Choice(item))
        elif isinstance(item, dict):
            out.append(_Choice(str(item.get("text", "")), item.get("logprobs"), item.get("finish_reason", "stop")))
        else:
            raise TypeError(f"responder returned {type(item).__name__}; expected str or dict")
    return out


def _lp_entry(token: str, prob: float, top: list[tuple[str, float]]) -> dict:
    def one(tok: str, p: float) -> dict:
        return {"token": tok, "logprob": math.log(max(p, 1e-12)), "bytes": list(tok.encode("utf-8"))}

    return {**one(token, prob), "top_logprobs": [one(t, p) for t, p in top]}


def build_logprobs(tokens: list[str], spec: Any, top_k: int) -> dict:
    """OpenAI-format `choices[i].logprobs` for `tokens`.

    `spec` may be an OpenAI object (`{"content": [...]}`, used verbatim) or a first-token
    distribution `{token: probability}`; it applies to the first token whose stripped text is one of
    its keys (so a `Yes` wrapped in adapter markers still gets it), else to the first token. With no
    spec, the first token gets probability 0.8 and the rest 0.99, with filler alternatives.
    """
    if isinstance(spec, dict) and "content" in spec:
        return spec
    dist: dict[str, float] = dict(spec) if isinstance(spec, dict) else {}
    target = next((i for i, t in enumerate(tokens) if t.strip() in dist), 0)
    content = []
    for i, tok in enumerate(tokens):
        if i == target and dist:
            p = dist.get(tok.strip(), 0.8)
            ranked = sorted(dist.items(), key=lambda kv: -kv[1])
        else:
            p = 0.8 if i == 0 else 0.99
            rest = [a for a in _FILLER_ALTERNATIVES if a != tok.strip()]
            ranked = [(tok, p)] + [(a, (1 - p) / 2 ** (j + 1)) for j, a in enumerate(rest)]
        content.append(_lp_entry(tok, p, ranked[:top_k]))
    return {"content": content, "refusal": None}


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.1 keep-alive: litellm / httpx reuse connections, as against a hosted API.
    protocol_version = "HTTP/1.1"
    timeout = 120  # idle keep-alive connections are dropped eventually, freeing their threads
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        # Without TCP_NODELAY, Nagle + delayed ACK hold each small response ~40 ms on loopback.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.owner._track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.owner._track(self.connection, add=False)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # tests and the quickstart want a quiet server; `requests`/`records` hold the log

    def _send_json(self, status: int, payload: dict, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _send_error(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        etype = _ERROR_TYPES.get(status, "server_error")
        err = {"message": message, "type": etype, "param": None, "code": etype}
        self._send_json(status, {"error": err}, headers)

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0].rstrip("/")
        rec = self.server.owner._record("GET", path, None, self.headers)
        if path in _MODEL_PATHS:
            rec.status = 200
            models = [{"id": m, "object": "model", "created": 0, "owned_by": "lmcot"} for m in self.server.owner.models]
            self._send_json(200, {"object": "list", "data": models})
        else:
            rec.status = 404
            self._send_error(404, f"no route for GET {path}")

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0].rstrip("/")
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw or b"{}")
            if not isinstance(body, dict):
                raise TypeError("body is not a JSON object")
        except (ValueError, TypeError) as exc:
            self.server.owner._record("POST", path, None, self.headers).status = 400
            self._send_error(400, f"invalid JSON body: {exc}")
            return
        owner = self.server.owner
        rec = owner._record("POST", path, body, self.headers)
        owner._gate(body)
        if owner.delay > 0:
            time.sleep(owner.delay)
        if path not in _CHAT_PATHS:
            rec.status = 404
            self._send_error(404, f"no route for POST {path}")
            return
        fail_status = owner._take_failure()
        if fail_status is not None:
            rec.status = fail_status
            headers = {}
            if owner.retry_after_ms is not None:
                # The OpenAI SDK honours this, so retry tests do not sleep through its backoff.
                headers["retry-after-ms"] = str(owner.retry_after_ms)
            self._send_error(fail_status, f"injected failure ({fail_status})", headers)
            return
        try:
            payload = owner._complete(body)
        except Exception as exc:  # noqa: BLE001 - a responder bug must surface as a 500, not a dropped socket
            traceback.print_exc(file=sys.stderr)
            rec.status = 500
            self._send_error(500, f"responder failed: {type(exc).__name__}: {exc}")
            return
        rec.status = 200
        self._send_json(200, payload)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True  # a hung client must never keep the test process alive
    # socketserver's default listen backlog is 5: with more connections opening at once (a benchmark
    # with 72 concurrent calls) the kernel drops SYNs and the client retries a second later.
    request_queue_size = 256
    allow_reuse_address = True
    owner: OracleServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client killed mid-request (the crash-and-resume tests do this on purpose) is not a
        # server error: skip the traceback the stdlib would print for it.
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return
        super().handle_error(request, client_address)


class OracleServer:
    """OpenAI-compatible chat server on 127.0.0.1 driven by `responder(request_body)`.

    `responder` returns a str, a dict `{"text", "logprobs"?, "finish_reason"?}`, or a list of
    either (one per choice; a single value is repeated for `n` choices). Attributes you may set:
    `delay` (seconds before each response), `support_logprobs` (False: answer `logprobs: null`,
    as servers without logprobs do), `retry_after_ms` (sent with injected failures; None to omit, leaving clients their backoff),
    `models` (ids listed by `GET /v1/models`).

    ``hold_after(n)`` answers the next ``n`` matching chat requests and holds every later one until
    ``release()``; ``wait_until_holding()`` returns once one is held. A test that kills a client
    mid-run uses it to know where the client stands (events, not timing).
    """

    def __init__(
        self,
        responder: Responder | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        models: tuple[str, ...] = ("oracle",),
    ) -> None:
        self.responder: Responder = responder or (lambda body: "I don't know")
        self.host, self.port, self.models = host, port, list(models)
        self.delay = 0.0
        self.support_logprobs = True
        self.retry_after_ms: int | None = 1
        self._lock = threading.Lock()
        self._records: list[RequestRecord] = []
        self._fail_remaining, self._fail_status = 0, 500
        self._connections: set[socket.socket] = set()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._ids = 0
        self._hold: tuple[int, Callable[[dict], bool]] | None = None
        self._holding, self._released = threading.Event(), threading.Event()

    # ---- lifecycle -------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """Base URL for OpenAI clients, e.g. `http://127.0.0.1:PORT/v1`."""
        return f"http://{self.host}:{self.port}/v1"

    def start(self) -> OracleServer:
        if self._httpd is not None:
            return self
        self._httpd = _HTTPServer((self.host, self.port), _Handler)
        self._httpd.owner = self
        self.port = self._httpd.server_address[1]  # the real port when 0 was asked for
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="oracle-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close the listening socket and drop kept-alive client connections."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self.release()  # held handler threads finish rather than block shutdown
        httpd.shutdown()
        httpd.server_close()
        with self._lock:
            conns = list(self._connections)
        for conn in conns:  # unblocks handler threads waiting for the next keep-alive request
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> OracleServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- request log and fault injection ------------------------------------------------------
    @property
    def records(self) -> list[RequestRecord]:
        """Every request received (any path), oldest first; a snapshot copy."""
        with self._lock:
            return list(self._records)

    @property
    def requests(self) -> list[dict]:
        """Parsed JSON bodies of chat-completion requests (failed ones included); a snapshot."""
        return [r.body for r in self.records if r.method == "POST" and r.path in _CHAT_PATHS and r.body is not None]

    @property
    def request_count(self) -> int:
        return len(self.requests)

    def clear(self) -> None:
        with self._lock:
            self._records.clear()

    def fail_next(self, k: int, status: int = 500) -> None:
        """Make the next `k` chat requests fail with `status` (OpenAI error JSON)."""
        with self._lock:
            self._fail_remaining, self._fail_status = int(k), int(status)

    def hold_after(self, n: int, match: Callable[[dict], bool] = lambda body: True) -> None:
        """Answer the next ``n`` chat requests for which ``match(body)`` is true; hold the later ones."""
        with self._lock:
            self._hold = (int(n), match)
            self._holding.clear()
            self._released.clear()

    def wait_until_holding(self, timeout: float | None = None) -> bool:
        return self._holding.wait(timeout)

    def release(self) -> None:
        """Let held requests (and every later one) through."""
        with self._lock:
            self._hold = None
        self._released.set()

    def _gate(self, body: dict) -> None:
        with self._lock:
            if self._hold is None or not self._hold[1](body):
                return
            left, match = self._hold
            if left > 0:
                self._hold = (left - 1, match)
                return
            self._holding.set()
        self._released.wait()

    def _take_failure(self) -> int | None:
        with self._lock:
            if self._fail_remaining <= 0:
                return None
            self._fail_remaining -= 1
            return self._fail_status

    def _record(self, method: str, path: str, body: dict | None, headers: Any) -> RequestRecord:
        rec = RequestRecord(method, path, body, has_auth=bool(headers.get("Authorization")))
        with self._lock:
            self._records.append(rec)
        return rec

    def _track(self, conn: socket.socket, add: bool) -> None:
        with self._lock:
            (self._connections.add if add else self._connections.discard)(conn)

    # ---- completion ----------------------------------------------------------------------------
    def _complete(self, body: dict) -> dict:
        n = max(1, int(body.get("n") or 1))
        choices = _choices_from(self.responder(body), n)
        stops = body.get("stop") or []
        stops = [stops] if isinstance(stops, str) else list(stops)
        max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
        want_lp = bool(body.get("logprobs")) and self.support_logprobs
        top_k = int(body.get("top_logprobs") or 0)
        out, completion_tokens = [], 0
        for i, ch in enumerate(choices):
            text, finish = ch.text, ch.finish_reason
            for s in stops:  # honour `stop` like a real server: cut before the first stop string
                if s and s in text:
                    text, finish = text[: text.index(s)], "stop"
            tokens = tokenize(text)
            if max_tokens and len(tokens) > int(max_tokens):
                tokens, finish = tokens[: int(max_tokens)], "length"
                text = "".join(tokens)
            completion_tokens += len(tokens)
            out.append(
                {
                    "index": i,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": finish,
                    "logprobs": build_logprobs(tokens, ch.logprobs, top_k) if want_lp else None,
                }
            )
        prompt_tokens = sum(len(tokenize(message_text(m))) for m in body.get("messages") or [])
        with self._lock:
            self._ids += 1
            rid = self._ids
        return {
            "id": f"chatcmpl-oracle-{rid}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "oracle"),
            "system_fingerprint": None,
            "choices": out,
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }


def config_examples(path: str) -> list:
    """The train and dev examples of an lmcot config, whole (no context cut: the script knows the gold)."""
    from lmcot.config import load_config
    from lmcot.splits import load_split

    cfg = load_config(path, ["data.max_context_tokens=null"])
    return [ex.toDict() for split in ("train", "dev") if getattr(cfg.data, split)
            for ex in load_split(cfg, split, count_tokens=None)]


def main(argv: list[str] | None = None) -> int:
    """Serve `OracleResponder` over a HotpotQA / 2Wiki JSON file until SIGINT or SIGTERM."""
    ap = argparse.ArgumentParser(description="Scripted stand-in large LM (OpenAI-compatible) on 127.0.0.1.")
    ap.add_argument("--data", action="append", default=[], help="HotpotQA/2Wiki JSON or JSONL file (repeatable)")
    ap.add_argument("--config", action="append", default=[],
                    help="an lmcot config: its data.train and data.dev, read by lmcot's own loader (any task: "
                         "data.dataset custom, data.fields, data.answer_regex; repeatable)")
    ap.add_argument("--port", type=int, default=8765)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--wrong-rate", type=float, default=0.0, help="probability of a distractor answer")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rationale-sensitive", action="store_true",
                    help="play a reader: guided answers depend on the rationale (see --reader-rule)")
    ap.add_argument("--standard-accuracy", type=float, default=1.0,
                    help="with --rationale-sensitive: share of questions standard prompting gets right")
    ap.add_argument("--cot-accuracy", type=float, default=1.0,
                    help="with --rationale-sensitive: share of questions CoT prompting gets right")
    ap.add_argument("--reader-rule", choices=("follow", "lenient"), default="follow",
                    help="with --rationale-sensitive: follow (answer the conclusion a rationale states; with none, "
                         "the evidence rule) or lenient (the evidence rule whatever the rationale concludes)")
    args = ap.parse_args(argv)
    if not args.data and not args.config:
        ap.error("give --data FILE or --config FILE.yaml")
    examples = [ex for path in args.data for ex in load_examples(path)]
    examples += [ex for path in args.config for ex in config_examples(path)]
    responder = OracleResponder(examples, wrong_rate=args.wrong_rate, seed=args.seed,
                                rationale_sensitive=args.rationale_sensitive,
                                standard_accuracy=args.standard_accuracy, cot_accuracy=args.cot_accuracy,
                                reader_rule=args.reader_rule)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with OracleServer(responder, host=args.host, port=args.port) as srv:
        print(responder.describe(), file=sys.stderr, flush=True)
        print(f"oracle server listening on {srv.url}", flush=True)
        while not stop.wait(0.5):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())

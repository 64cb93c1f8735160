"""``lmcot serve``: a compiled program behind an OpenAI-compatible HTTP API (Starlette on uvicorn).

    lmcot serve --program runs/quickstart [--config C.yaml] [--set key=value] [--host 127.0.0.1]
                [--port 8000] [--api-key-env NAME] [--request-timeout 300]

Routes: ``GET /health``; ``GET /v1/models`` (the program); ``POST /v1/chat/completions``: the last
user message is the question, an optional top-level ``context`` the passage(s); the reply's
``choices[0].message.content`` is the large LM's answer and ``reasoning_content`` the small LM's
rationale; ``stream: true`` sends them as server-sent events (rationale first). The work of a request
is ``lmcot.programs.serving``; this module wires it to HTTP:

- each request runs on a pool of ``service.request_workers`` threads, so concurrent requests share the
  small LM's micro-batching engine (their rationales are generated in one batch);
- every error is OpenAI's JSON ``{"error": {"message", "type", "code", "param"}}`` and the server goes
  on: 400 bad request, 401 missing/wrong bearer key (with ``--api-key-env``), 404 unknown model or
  route, 502 the large LM failed, 504 a request ran past ``--request-timeout`` (its work goes on in
  the background and its paid calls are cached; a request still queued is dropped);
- SIGTERM (or Ctrl-C) stops accepting connections, finishes the requests in flight, then exits (0).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import signal
import socket
from contextlib import asynccontextmanager
from typing import Any, Callable

from lmcot.programs.serving import ProgramService, ServeError


def main(program, config, overrides: list[str], *, host: str, port: int, api_key_env: str | None,
         request_timeout: float, max_request_bytes: int, served_model_name: str | None, verbose: bool) -> None:
    """``lmcot serve``: check the listening side and the program, then serve until SIGTERM."""
    from lmcot.commands.common import fail, guard, load, show_config
    from lmcot.config_types import looks_like_a_key
    from lmcot.console import say
    from lmcot.preflight import check_before_calls
    from lmcot.redact import secret_from_env

    with guard(verbose, "server stopped; every request in flight was answered, and the LM calls that finished are "
               "cached") as places:
        # The key's own value (``sk-...``, ``ghp_...``) would be printed back below: refuse it unnamed.
        if api_key_env is not None and looks_like_a_key(api_key_env):
            fail("--api-key-env must be the NAME of an environment variable that holds the key, not the key itself")
        if api_key_env is None and not is_loopback(host):
            fail(f"--host {host} is not a loopback address: anyone who reaches it could spend your large-LM budget; "
                 "pass --api-key-env NAME (clients then send that key as a bearer token) or use --host 127.0.0.1")
        # Read through the one reader of keys: registered for redaction as it is read, before any message.
        key = secret_from_env(api_key_env) if api_key_env else None
        if api_key_env and not key:
            fail(f"--api-key-env {api_key_env}: the environment variable is not set (or empty)")
        cfg = load(config, overrides, program)
        show_config(cfg, verbose)
        places.update({"cache_dir": cfg.cache_dir})
        check_before_calls(cfg, roles=("large_lm",))
        run_server(cfg, program, host=host, port=port, api_key=key, request_timeout=request_timeout,
                   max_request_bytes=max_request_bytes, model_name=served_model_name,
                   say=lambda m: say("serve:", "bold cyan", m))

log = logging.getLogger("lmcot.serve")


def is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # any other host name may resolve to a public address


def create_app(service: ProgramService, *, api_key: str | None = None, request_timeout: float = 300.0):
    """The ASGI app (a Starlette app) serving ``service``."""
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.responses import JSONResponse, StreamingResponse
    from starlette.routing import Route

    from lmcot.parallel import ContextPool

    pool = ContextPool(max_workers=service.request_workers, thread_name_prefix="lmcot-request")
    expected = f"Bearer {api_key}".encode() if api_key else None

    def error(exc: ServeError, request=None) -> JSONResponse:
        where = f"{request.method} {request.url.path} " if request is not None else ""
        log.warning("%s%d %s: %s", where, exc.status, exc.code, exc.message)
        return JSONResponse(exc.body(), status_code=exc.status)

    def unauthorized(request) -> JSONResponse | None:
        if expected is None:
            return None
        given = request.headers.get("authorization", "").encode()
        if hmac.compare_digest(given, expected):
            return None
        what = "wrong" if given else "missing"
        return error(ServeError(401, f"{what} API key: this server takes 'Authorization: Bearer <key>'",
                                code="invalid_api_key"), request)

    async def read_body(request) -> bytes:
        cap = service.max_request_bytes
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > cap):
            raise ServeError(400, f"the request body is {declared} bytes; this server takes at most {cap}",
                             code="request_too_large")
        body = bytearray()
        async for part in request.stream():
            body += part
            if len(body) > cap:
                raise ServeError(400, f"the request body is over {cap} bytes, the most this server takes",
                                 code="request_too_large")
        return bytes(body)

    def timed_out() -> ServeError:
        return ServeError(504, f"the request took longer than {request_timeout:g} s (--request-timeout)",
                          type="timeout_error", code="request_timeout")

    def internal(exc: BaseException) -> ServeError:
        return ServeError(500, f"internal error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
                          type="server_error", code="internal_error")

    async def health(request):
        engine = service.engine
        small = {"batches": engine.batches_run, "batched_requests": engine.batched_requests} if engine else None
        return JSONResponse({"status": "ok", "model": service.model_id, "small_lm": small})

    async def models(request):
        return unauthorized(request) or JSONResponse(service.models())

    async def chat(request):
        denied = unauthorized(request)
        if denied is not None:
            return denied
        try:
            parsed = service.parse(await read_body(request))
        except ServeError as exc:
            return error(exc, request)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + request_timeout
        events: asyncio.Queue = asyncio.Queue()

        def emit(kind: str, value: Any) -> None:
            loop.call_soon_threadsafe(events.put_nowait, (kind, value))

        def work() -> None:
            try:
                reply = service.run(parsed, on_rationale=(lambda r: emit("rationale", r)) if parsed.stream else None)
                emit("done", reply)
            except BaseException as exc:  # noqa: BLE001 - reported to the client, never raised in a pool thread
                emit("error", exc)

        future = pool.submit(work)

        async def next_event() -> tuple[str, Any]:
            try:
                return await asyncio.wait_for(events.get(), max(0.0, deadline - loop.time()))
            except asyncio.TimeoutError:
                future.cancel()  # dropped if still queued; a running request finishes in the background
                return "error", timed_out()

        def as_serve_error(exc: BaseException) -> ServeError:
            if isinstance(exc, ServeError):
                return exc
            log.error("%s %s: %s: %s", request.method, request.url.path, type(exc).__name__, exc)
            return internal(exc)

        kind, value = await next_event()
        if kind == "error":
            return error(as_serve_error(value), request)
        if not parsed.stream:
            return JSONResponse(service.completion(parsed, value))

        def sse(payload: dict) -> str:
            return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"

        async def stream(kind: str, value: Any):
            # The first event is known before the headers go out (so an early error keeps its status).
            while True:
                if kind == "rationale":
                    yield sse(service.chunk(parsed, {"role": "assistant", "reasoning_content": value}))
                elif kind == "done":
                    yield sse(service.chunk(parsed, {"content": value.answer}))
                    yield sse(service.chunk(parsed, {}, finish_reason="stop"))
                    if parsed.include_usage:
                        yield sse({**service.chunk(parsed, None), "usage": value.usage()})
                    break
                else:  # after the headers, a failure travels as an error event (as OpenAI's API sends it)
                    failure = as_serve_error(value)
                    log.warning("%s %s: %d %s (streaming): %s", request.method, request.url.path, failure.status,
                                failure.code, failure.message)
                    yield sse(failure.body())
                    break
                kind, value = await next_event()
            yield "data: [DONE]\n\n"

        return StreamingResponse(stream(kind, value), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})

    async def http_error(request, exc: HTTPException):
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error(ServeError(exc.status_code, f"no route for {request.method} {request.url.path}", code=code),
                     request)

    @asynccontextmanager
    async def lifespan(app):
        yield
        # Shutdown: uvicorn has finished every request in flight; let the threads of requests that
        # timed out finish too (their paid calls land in the cache).
        await asyncio.get_running_loop().run_in_executor(None, lambda: pool.shutdown(wait=True))

    routes = [Route("/health", health, methods=["GET"]), Route("/v1/models", models, methods=["GET"]),
              Route("/v1/chat/completions", chat, methods=["POST"])]
    return Starlette(routes=routes, exception_handlers={HTTPException: http_error}, lifespan=lifespan)


def listen(host: str, port: int) -> socket.socket:
    """The listening socket, bound here: a busy port or an unknown host is a one-line error before the
    program loads (connections made while it loads wait in the backlog)."""
    from lmcot.errors import UserError

    try:
        family = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)[0][0]
        return socket.create_server((host.strip("[]"), port), family=family, backlog=2048)
    except OSError as exc:
        raise UserError(f"--host {host} --port {port}: cannot listen there ({exc.strerror or exc})") from None


def serve_forever(app, sock: socket.socket, *, request_timeout: float) -> bool:
    """Run uvicorn on ``sock`` until SIGTERM / SIGINT; True when SIGTERM stopped it. uvicorn finishes
    the requests in flight first (at most ``request_timeout`` + 10 s), then re-raises the signal it
    caught: SIGTERM's handler here only notes it, so the command exits 0; SIGINT raises
    KeyboardInterrupt (exit 130, as for every lmcot command)."""
    import uvicorn

    terminated: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: terminated.append(signum))
    try:
        config = uvicorn.Config(app, log_config=None, lifespan="on", timeout_graceful_shutdown=request_timeout + 10,
                                timeout_keep_alive=30)
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        signal.signal(signal.SIGTERM, previous)
    return bool(terminated)


def run_server(cfg, program_dir, *, host: str, port: int, api_key: str | None, request_timeout: float,
               max_request_bytes: int, model_name: str | None, say: Callable[[str], None]) -> None:
    """Load the program, bind, serve until stopped (what ``lmcot serve`` runs after its checks)."""
    from pathlib import Path

    from lmcot.lms import configure_cache
    from lmcot.preflight import check_cache_dir
    from lmcot.programs import LMGuidedCoT

    check_cache_dir(cfg.cache_dir)
    sock = listen(host, port)
    configure_cache(cfg.cache_dir)
    program = LMGuidedCoT.from_folder(program_dir, cfg)
    model_id = model_name or Path(program_dir).resolve().name
    service = ProgramService(program, cfg, model_id=model_id, max_request_bytes=max_request_bytes)
    service.warm_up()
    bound = sock.getsockname()
    shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).setLevel(logging.INFO)  # one line per request, through lmcot's redacting handler
    say(f"serving {model_id!r} at http://{shown}:{bound[1]}/v1 (small LM {program.small_lm.model}, large LM "
        f"{service.upstream()}; {service.request_workers} request threads, {cfg.eval.concurrency} large-LM calls "
        f"at once{'; bearer key required' if api_key else ''})")
    terminated = serve_forever(create_app(service, api_key=api_key, request_timeout=request_timeout), sock,
                               request_timeout=request_timeout)
    say("stopped" + (" (SIGTERM)" if terminated else "") + "; every request in flight was answered")

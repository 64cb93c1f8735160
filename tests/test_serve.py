"""``lmcot serve``'s app, in process: a program folder around the tiny student, the real Starlette app on
uvicorn (a thread, a free 127.0.0.1 port), driven with the official ``openai`` client (and raw HTTP
where the wire itself is the point), the large LM behind the scripted stand-in server. The CLI in a
subprocess (SIGTERM, a compiled program) is ``tests/test_serve_cli.py``."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from openai import OpenAI

from support.reliability import assert_one_line_error, invoke, program_folder


@pytest.fixture(autouse=True)
def _a_service_sets_the_process_cache(monkeypatch):
    """``_service`` sets the process-wide cache as ``lmcot serve`` does (the command owns its process):
    monkeypatch puts DSPy's cache and lmcot's memo folder back after each test that builds one."""
    import dspy

    from lmcot.memo import memo_dir

    monkeypatch.setattr(dspy, "cache", dspy.cache)
    monkeypatch.setattr("lmcot.memo._memo_dir", memo_dir())

SERVER_KEY = "serve-key-7f3a9c"
UPSTREAM_KEY = "sk-upstream-SECRET-4821"
UPSTREAM_KEY_VAR = "LMCOT_TEST_SERVE_UPSTREAM_KEY"


class InProcessServer:
    """uvicorn serving ``app`` on a thread (signals stay with pytest), stopped like SIGTERM stops it."""

    def __init__(self, app):
        import uvicorn

        from lmcot.commands.serve import listen

        class Server(uvicorn.Server):
            async def startup(self, sockets=None):
                await super().startup(sockets=sockets)
                self.ready.set()

        sock = listen("127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        self.server = Server(uvicorn.Config(app, log_config=None, lifespan="on"))
        self.server.ready = threading.Event()
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        assert self.server.ready.wait(120) and self.server.started, "uvicorn did not start"

    def client(self, key: str = "none", **kw) -> OpenAI:
        return OpenAI(base_url=self.url + "/v1", api_key=key, max_retries=0, **kw)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=60)


def _config(folder: Path, oracle_url: str, cache: Path, **extra: str):
    from lmcot.programs.program_io import program_config

    sets = {"large_lm.model": "openai/oracle", "large_lm.api_base": f'"{oracle_url}"', "large_lm.num_retries": "0",
            "large_lm.api_key_env": UPSTREAM_KEY_VAR, "small_lm.max_tokens": "12", "small_lm.batch_size": "4",
            "eval.concurrency": "4", "cache_dir": str(cache), **extra}
    return program_config(folder, None, [f"{k}={v}" for k, v in sets.items()])  # as `lmcot serve --set ...` does


def _service(folder: Path, cfg, model_id: str = "tiny"):
    from lmcot.lms import configure_cache
    from lmcot.programs import LMGuidedCoT
    from lmcot.programs.serving import ProgramService

    configure_cache(cfg.cache_dir)
    service = ProgramService(LMGuidedCoT.from_folder(folder, cfg), cfg, model_id=model_id)
    service.warm_up()
    return service


def _app(service, **kw):
    from lmcot.commands.serve import create_app

    return create_app(service, **kw)


@pytest.fixture(scope="module")
def upstream_key():
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(UPSTREAM_KEY_VAR, UPSTREAM_KEY)
        yield UPSTREAM_KEY


@pytest.fixture(scope="module")
def examples():
    """HotpotQA dev questions with contexts cut to ~150 words: the tiny student's tokenizer makes a
    whole context longer than its 2048-token prompt limit, which the server refuses (tested below)."""
    from lmcot.data import load_examples
    from support.paths import HOTPOT

    return load_examples("hotpotqa", str(HOTPOT), max_context_tokens=200).examples


@pytest.fixture(scope="module")
def folder(tiny_causal_path, tmp_path_factory) -> Path:
    """A program folder as `lmcot compile` writes it, around the talkative tiny student."""
    from support.tiny import scramble_and_save  # seeded noise: a tiny model that writes (nonsense) rationales

    tmp = tmp_path_factory.mktemp("serve")
    student = scramble_and_save(Path(tiny_causal_path), tmp / "talkative", seed=0)
    return program_folder(tmp, student, trust=False)


@pytest.fixture(scope="module")
def served(folder, oracle_server, upstream_key, tmp_path_factory):
    import dspy

    from lmcot.memo import memo_dir

    # Module-scoped, so set up before the per-test monkeypatch records the cache: it puts back its own.
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(dspy, "cache", dspy.cache)
        mp.setattr("lmcot.memo._memo_dir", memo_dir())
        service = _service(folder, _config(folder, oracle_server.url, tmp_path_factory.mktemp("serve-cache")))
        server = InProcessServer(_app(service))
        yield service, server
        server.stop()


def _ask(client: OpenAI, example, **kw):
    return client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": example.question}],
                                          extra_body={"context": example.context, **kw.pop("extra_body", {})}, **kw)


def test_reply_is_the_programs_answer_and_rationale_with_both_lms_tokens(served, examples):
    from lmcot.usage import UsageMeter

    service, server = served
    example = examples[0]
    meter = UsageMeter([service.program.small_lm, service.program.large_lm])
    reply = _ask(server.client(), example)
    spent = meter.report()
    expected = service.program(question=example.question, context=example.context)  # now from the cache
    message = reply.choices[0].message
    assert message.content == expected.answer == example.answer  # the stand-in reader knows the gold answer
    assert message.reasoning_content == expected.rationale and message.reasoning_content.strip()
    assert reply.model == "tiny" and reply.object == "chat.completion" and reply.choices[0].finish_reason == "stop"
    # usage adds up what both LMs spent on this request (the only one in flight)
    assert reply.usage.prompt_tokens == spent["prompt_tokens"] and reply.usage.completion_tokens == spent["completion_tokens"]
    tokens = reply.model_extra["lmcot"]["tokens"]
    assert set(tokens) == {service.program.small_lm.model, "openai/oracle"}
    assert all(t["prompt_tokens"] > 0 and t["completion_tokens"] > 0 for t in tokens.values())
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


def test_context_as_a_list_of_passages_and_models_and_health(served, examples):
    service, server = served
    example = examples[1]
    passages = example.context.split("\n")
    as_list = _ask(server.client(), example, extra_body={"context": passages})
    as_text = _ask(server.client(), example)
    assert as_list.choices[0].message.content == as_text.choices[0].message.content == example.answer
    assert as_list.choices[0].message.reasoning_content == as_text.choices[0].message.reasoning_content
    assert [m.id for m in server.client().models.list()] == ["tiny"]
    assert httpx.get(server.url + "/health").json()["status"] == "ok"


def test_streaming_sends_the_rationale_then_the_answer_then_done(served, examples):
    service, server = served
    example = examples[2]
    whole = _ask(server.client(), example).choices[0].message
    chunks = list(_ask(server.client(), example, stream=True, stream_options={"include_usage": True}))
    kinds = []
    for chunk in chunks[:-1]:
        delta = chunk.choices[0].delta
        kinds += [k for k in ("reasoning_content", "content") if (delta.model_extra or {}).get(k) or getattr(delta, k, None)]
    assert kinds == sorted(kinds, key=["reasoning_content", "content"].index) and set(kinds) == {"reasoning_content", "content"}
    rationale = "".join((c.choices[0].delta.model_extra or {}).get("reasoning_content") or "" for c in chunks if c.choices)
    answer = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert (rationale, answer) == (whole.reasoning_content, whole.content)
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None  # include_usage: a last chunk with usage
    raw = httpx.post(server.url + "/v1/chat/completions", json={
        "model": "tiny", "stream": True, "messages": [{"role": "user", "content": example.question}],
        "context": example.context}).text
    assert raw.rstrip().endswith("data: [DONE]") and "reasoning_content" in raw


def test_concurrent_requests_share_the_small_lms_batches(served, examples, monkeypatch):
    """12 requests at once (the server's 2 x batch_size + eval.concurrency threads): the engine
    generates their rationales in batches of 4 (small_lm.batch_size), not one at a time. Each request
    is held while the engine renders its prompt until all 12 are there, so the grouping is the
    engine's, not how fast the threads happened to start (events, not timing)."""
    import lmcot.hf_engine as hf_engine

    service, server = served
    engine = service.engine
    batch = examples[3:3 + service.request_workers]
    assert (len(batch), engine.batch_size) == (12, 4)
    entered, all_in, render = threading.Semaphore(0), threading.Event(), hf_engine.render_prompt

    def held_render(*args, **kwargs):
        entered.release()
        all_in.wait(120)
        return render(*args, **kwargs)

    sizes: list[int] = []
    original = engine.generate
    monkeypatch.setattr(hf_engine, "render_prompt", held_render)
    monkeypatch.setattr(engine, "generate", lambda prompts, *a, **k: (sizes.append(len(prompts)),
                                                                        original(prompts, *a, **k))[1])
    before = httpx.get(server.url + "/health").json()["small_lm"]
    with ThreadPoolExecutor(len(batch)) as pool:
        replies = [pool.submit(_ask, server.client(), ex) for ex in batch]
        for _ in batch:
            assert entered.acquire(timeout=120), "a request never reached the small LM"
        all_in.set()
        replies = [r.result() for r in replies]
    assert [r.choices[0].message.content for r in replies] == [ex.answer for ex in batch]
    assert sizes == [4, 4, 4]
    after = httpx.get(server.url + "/health").json()["small_lm"]
    assert (after["batches"] - before["batches"], after["batched_requests"] - before["batched_requests"]) == (3, 12)


def test_a_request_may_lower_num_samples_never_raise_it(folder, oracle_server, upstream_key, tmp_path, examples):
    cfg = _config(folder, oracle_server.url, tmp_path / "cache", **{"eval.num_samples": "3",
                                                                     "eval.sample_temperature": "0.9"})
    server = InProcessServer(_app(_service(folder, cfg)))
    try:
        client, example = server.client(), examples[0]
        assert len(_ask(client, example).model_extra["lmcot"]["rationales"]) == 3  # the program's own k
        fewer = _ask(client, example, extra_body={"num_samples": 2, "select": "vote"})
        assert len(fewer.model_extra["lmcot"]["rationales"]) == 2
        assert fewer.choices[0].message.reasoning_content in fewer.model_extra["lmcot"]["rationales"]
        for extra, needle in (({"num_samples": 4}, "from 1 to 3"), ({"num_samples": 0}, "from 1 to 3"),
                              ({"select": "quality"}, "'select' must be 'vote'"), ({"select": "best"}, "'select'")):
            with pytest.raises(Exception) as err:
                _ask(client, example, extra_body=extra)
            assert err.value.status_code == 400 and needle in err.value.message, extra
    finally:
        server.stop()


def _post(server, body, **kw) -> httpx.Response:
    content = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return httpx.post(server.url + "/v1/chat/completions", content=content,
                      headers={"content-type": "application/json", **kw.pop("headers", {})}, **kw)


def test_bad_requests_get_openai_errors_and_the_server_goes_on(folder, oracle_server, upstream_key, tmp_path,
                                                               examples):
    cfg = _config(folder, oracle_server.url, tmp_path / "cache", **{"small_lm.max_input_tokens": "600"})
    service = _service(folder, cfg)
    service.max_request_bytes = 20_000
    server = InProcessServer(_app(service))
    question = {"role": "user", "content": "Who?"}
    cases = {
        "not JSON": (b"{nope", 400, "invalid_json"),
        "not an object": ([1, 2], 400, "invalid_json"),
        "no messages": ({"model": "tiny"}, 400, "invalid_request"),
        "no user message": ({"model": "tiny", "messages": [{"role": "system", "content": "x"}]}, 400, "missing_question"),
        "empty question": ({"model": "tiny", "messages": [{"role": "user", "content": "  "}]}, 400, "missing_question"),
        "context of numbers": ({"model": "tiny", "messages": [question], "context": [1, 2]}, 400, "invalid_request"),
        "n=2": ({"model": "tiny", "messages": [question], "n": 2}, 400, "invalid_request"),
        "too many bytes": ({"model": "tiny", "messages": [question], "context": "word " * 5000}, 400, "request_too_large"),
        "too many tokens": ({"model": "tiny", "messages": [question], "context": "Paris is in France. " * 300}, 400,
                            "context_length_exceeded"),
        "unknown model": ({"model": "gpt-4o", "messages": [question]}, 404, "model_not_found"),
    }
    try:
        for name, (body, status, code) in cases.items():
            reply = _post(server, body)
            assert reply.status_code == status, (name, reply.text)
            error = reply.json()["error"]
            assert error["code"] == code and error["type"] == "invalid_request_error" and error["message"], name
        assert httpx.get(server.url + "/v2/nothing").json()["error"]["code"] == "not_found"
        with pytest.raises(Exception) as err:  # the openai client raises its own class for a 400
            server.client().chat.completions.create(model="tiny", messages=[{"role": "user", "content": ""}])
        assert type(err.value).__name__ == "BadRequestError" and "no question" in err.value.message
        example = examples[0]
        assert _ask(server.client(), example).choices[0].message.content == example.answer  # still serving
    finally:
        server.stop()


def test_a_bearer_key_is_required_when_set(served, examples):
    service, _ = served
    server = InProcessServer(_app(service, api_key=SERVER_KEY))
    try:
        example = examples[0]
        with pytest.raises(Exception) as err:
            _ask(server.client("wrong-key"), example)
        assert err.value.status_code == 401 and err.value.body["code"] == "invalid_api_key"
        bare = _post(server, {"model": "tiny", "messages": [{"role": "user", "content": example.question}]})
        assert bare.status_code == 401 and "missing API key" in bare.json()["error"]["message"]
        assert httpx.get(server.url + "/v1/models").status_code == 401
        assert httpx.get(server.url + "/health").status_code == 200  # for load balancers; it tells nothing
        assert _ask(server.client(SERVER_KEY), example).choices[0].message.content == example.answer
        assert SERVER_KEY not in bare.text
    finally:
        server.stop()


def test_a_failing_large_lm_is_a_502_naming_it_without_its_key(folder, upstream_key, tmp_path, examples, caplog):
    from support.oracle_server import OracleServer

    with OracleServer(lambda body: "unused") as upstream:
        server = InProcessServer(_app(_service(folder, _config(folder, upstream.url, tmp_path / "cache"))))
        try:
            upstream.fail_next(1000, 500)
            with pytest.raises(Exception) as err:
                _ask(server.client(), examples[0])
            assert err.value.status_code == 502 and err.value.body["code"] == "large_lm_failed"
            message = err.value.message
            assert "- the large LM failed: " in message  # the openai client prefixes "Error code: 502"
            assert message.endswith(f"; large LM: openai/oracle at http://127.0.0.1:{upstream.port}/v1")
            # streamed: the rationale went out, then the failure as an error event (the status was already 200)
            with pytest.raises(Exception) as err:
                list(_ask(server.client(), examples[1], stream=True))
            assert type(err.value).__name__ == "APIError" and err.value.body["code"] == "large_lm_failed"
            assert err.value.message.endswith(f"openai/oracle at {upstream.url}")
            upstream.fail_next(0)
            upstream.responder = lambda body: "[[ ## answer ## ]]\nParis\n\n[[ ## completed ## ]]"
            assert _ask(server.client(), examples[2]).choices[0].message.content == "Paris"  # still serving
        finally:
            server.stop()
    assert UPSTREAM_KEY not in message + caplog.text


def test_a_request_past_the_timeout_is_a_504_and_the_server_goes_on(folder, oracle_server, upstream_key, tmp_path,
                                                                    examples):
    from support.oracle_server import OracleServer

    with OracleServer(oracle_server.responder) as upstream:
        service = _service(folder, _config(folder, upstream.url, tmp_path / "cache"))
        server = InProcessServer(_app(service, request_timeout=1.0))
        try:
            upstream.hold_after(0)  # the large LM holds every call until released
            with pytest.raises(Exception) as err:
                _ask(server.client(), examples[0])
            assert err.value.status_code == 504 and err.value.body["code"] == "request_timeout"
            # streamed: the rationale went out with a 200, so the timeout comes as an error event
            with pytest.raises(Exception) as err:
                list(_ask(server.client(), examples[1], stream=True))
            assert type(err.value).__name__ == "APIError" and err.value.body["code"] == "request_timeout"
            upstream.release()
            example = examples[2]
            assert _ask(server.client(), example).choices[0].message.content == example.answer
        finally:
            upstream.release()
            server.stop()


def test_a_public_address_needs_a_key_and_the_key_variable_must_be_set(folder):
    assert_one_line_error(invoke(["serve", "--program", folder, "--host", "0.0.0.0"]), "not a loopback address",
                          "--api-key-env")
    assert_one_line_error(invoke(["serve", "--program", folder, "--host", "0.0.0.0", "--api-key-env",
                                  "LMCOT_TEST_UNSET_SERVE_KEY"]), "LMCOT_TEST_UNSET_SERVE_KEY", "not set")
    # A key pasted in place of the name is refused without being echoed, even one shaped like a name.
    for pasted in ("sk-live-123456", "ghp_abcdefghijklmnopqrstuvwxyz0123456789", "hf_AbCdEfGhIjKlMnOpQrStUv"):
        line = assert_one_line_error(invoke(["serve", "--program", folder, "--api-key-env", pasted]), "NAME")
        assert pasted not in line


def test_parse_keeps_what_the_program_allows():
    """The request rules, without HTTP: a question, a context, fewer samples, the same-cost selections."""
    from lmcot.config import LMCoTConfig
    from lmcot.programs import LMGuidedCoT
    from lmcot.programs.serving import ProgramService, ServeError

    service = ProgramService(LMGuidedCoT(None, None, num_samples=3, select="quality"), LMCoTConfig(), model_id="m")

    def parse(**fields):
        body = {"model": "m", "messages": [{"role": "system", "content": "be brief"},
                                           {"role": "user", "content": [{"type": "text", "text": " Who? "}]}], **fields}
        return service.parse(json.dumps(body).encode())

    request = parse(context=["A: one.", "B: two."])
    assert (request.question, request.context, request.num_samples, request.select) == ("Who?", "A: one.\nB: two.", 3,
                                                                                          "quality")
    assert parse(num_samples=2, select="quality:factuality").select == "quality:factuality"
    assert parse(stream=True, stream_options={"include_usage": True}).include_usage
    for fields in ({"select": "vote"}, {"select": "quality:nonsense"}, {"num_samples": True}, {"num_samples": 5}):
        with pytest.raises(ServeError) as err:
            parse(**fields)
        assert err.value.status == 400 and err.value.param in ("select", "num_samples"), fields


def test_a_busy_port_is_a_one_line_error_before_the_program_loads(folder, oracle_server):
    import socket

    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        line = assert_one_line_error(invoke(["serve", "--program", folder, "--port", port,
                                             "--set", f"large_lm.api_base={oracle_server.url}"]), f"--port {port}")
    assert "cannot listen there" in line


def test_the_length_check_counts_the_prompt_of_the_programs_own_rationale_form(tiny_causal_path):
    """A program asking for ``evidence`` rationales sends the RationalizeEvidence prompt (longer
    instructions than the full form's): the 400 comes at that prompt's length, not the full form's."""
    from lmcot.config import load_config
    from lmcot.model_loading import load_tokenizer
    from lmcot.programs import LMGuidedCoT
    from lmcot.programs.adapter import rationale_messages
    from lmcot.programs.serving import ProgramService
    from lmcot.prompting import render_prompt, tokenize_prompts

    program = LMGuidedCoT(num_samples=3, rationale_form="evidence")
    service = ProgramService(program, load_config(None, []), model_id="tiny")  # the config's form: full
    assert service._variant(1, "vote").rationale_form == "evidence"  # a request's variant keeps the program's
    tokenizer = load_tokenizer(str(tiny_causal_path))
    question, context = "Where is Paris?", "Paris is the capital of France."

    def tokens(form: str) -> int:
        prompt = render_prompt(tokenizer, rationale_messages(question, context, form=form), False)
        return len(tokenize_prompts(tokenizer, [prompt], is_encoder_decoder=False, max_length=None)["input_ids"][0])

    sent, full = tokens("evidence"), tokens("full")
    assert sent > full  # else this test could not tell the two prompts apart
    _assert_the_limit_is_at(service, tokenizer, question, context, sent)


def test_the_length_check_counts_the_programs_demos(tiny_causal_path):
    """A program folder may carry few-shot demos in its rationalize state; they are part of the prompt sent."""
    import dspy

    from lmcot.config import load_config
    from lmcot.model_loading import load_tokenizer
    from lmcot.programs import LMGuidedCoT
    from lmcot.programs.adapter import rationale_messages
    from lmcot.programs.serving import ProgramService
    from lmcot.prompting import render_prompt, tokenize_prompts

    program = LMGuidedCoT(num_samples=1)
    demo = dspy.Example(question="Where is Rome?", context="Rome is the capital of Italy.",
                        rationale="Rome is the capital of Italy, so it is in Italy.")
    program.rationalize.demos = [demo]
    service = ProgramService(program, load_config(None, []), model_id="tiny")
    tokenizer = load_tokenizer(str(tiny_causal_path))
    question, context = "Where is Paris?", "Paris is the capital of France."

    def tokens(demos) -> int:
        messages = rationale_messages(question, context, program.rationalize.signature, demos=demos)
        prompt = render_prompt(tokenizer, messages, False)
        return len(tokenize_prompts(tokenizer, [prompt], is_encoder_decoder=False, max_length=None)["input_ids"][0])

    sent = tokens([demo])
    assert sent > tokens([])  # else this test could not tell the two prompts apart
    _assert_the_limit_is_at(service, tokenizer, question, context, sent)


def _assert_the_limit_is_at(service, tokenizer, question: str, context: str, sent: int) -> None:
    """``service``'s length check passes a request whose prompt is exactly ``sent`` tokens at a limit of
    ``sent`` and refuses it (400, naming the length) one token below."""
    from types import SimpleNamespace

    from lmcot.programs.serving import ChatRequest, ServeError

    service._tokenizer = tokenizer
    request = ChatRequest(question=question, context=context, num_samples=1, select="vote")
    service.engine = SimpleNamespace(is_encoder_decoder=False, max_input_tokens=sent)
    service.check_length(request)  # fits exactly
    service.engine = SimpleNamespace(is_encoder_decoder=False, max_input_tokens=sent - 1)
    with pytest.raises(ServeError) as err:
        service.check_length(request)
    assert err.value.status == 400 and f"a {sent}-token prompt" in str(err.value)

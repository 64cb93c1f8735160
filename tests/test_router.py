"""Several servers of one large LM (``large_lm.api_base`` as a list): litellm's Router behind a DSPy
engine (``lmcot.http_lm.RouterEngine``). `lmcot evaluate` against two stand-in servers and a dead URL: no answer lost,
both live servers used, the dead one reported (redacted) at start-up; a rerun against another
replica is served from the cache; a failing server is rested."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from support.paths import HOTPOT
from support.reliability import error_lines, invoke


N = 12
KEY_VAR, SECRET = "LMCOT_TEST_ROUTER_KEY", "sk-router-SECRET-5512"
URL_SECRET = "deadpass-71c"


def _dead_url() -> str:
    """A URL nobody listens on (a port just freed), with credentials that must never be shown."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1?code={URL_SECRET}"


@pytest.fixture(scope="module")
def responder(hotpot_examples):
    from support.oracle_responder import OracleResponder

    return OracleResponder([e.toDict() for e in hotpot_examples])


@pytest.fixture()
def servers(responder):
    from support.oracle_server import OracleServer

    with OracleServer(responder) as a, OracleServer(responder) as b:
        yield a, b


@pytest.fixture(autouse=True)
def key(monkeypatch):
    monkeypatch.setenv(KEY_VAR, SECRET)


def _evaluate(urls: list[str], tmp: Path, out: str, *extra: str):
    args = ["evaluate", "--methods", "standard,guided", "--limit", str(N), "--out", str(tmp / out),
            "--set", "large_lm.model=openai/oracle", "--set", f"large_lm.api_base=[{', '.join(repr(u) for u in urls)}]",
            "--set", f"large_lm.api_key_env={KEY_VAR}", "--set", "large_lm.num_retries=2",
            "--set", f"data.dev={HOTPOT}", "--set", "data.max_context_tokens=null",
            "--set", "small_lm.max_tokens=8", "--set", f"cache_dir={tmp / 'cache'}", *extra]
    return invoke(args)


def _chat_requests(server) -> int:
    return sum(1 for r in server.records if r.method == "POST")


def test_api_base_takes_a_list_of_urls():
    from lmcot.config import ConfigError, load_config

    cfg = load_config(None, ["large_lm.api_base=[http://a:8000/v1, http://b:8000/v1]"])
    assert [url.get_secret_value() for url in cfg.large_lm.api_base] == ["http://a:8000/v1", "http://b:8000/v1"]
    shown = load_config(None, ["large_lm.api_base=[http://a:8000/v1, 'http://b:8000/v1?code=k3y-9']"]).to_public_dict()
    assert shown["large_lm"]["api_base"] == ["http://a:8000/v1", "http://b:8000/v1?code=***"]
    for value, needle in (("[]", "empty list"), ("[http://a:8000/v1, not-a-url]", "item 1: not an http(s) URL"),
                          ("[http://a:1/v1, http://a:1/v1]", "item 1")):
        with pytest.raises(ConfigError, match="large_lm.api_base") as err:
            load_config(None, [f"large_lm.api_base={value}"])
        assert needle in str(err.value)


def test_evaluate_over_two_servers_and_a_dead_one_loses_nothing_and_uses_both(servers, tiny_causal_path, tmp_path,
                                                                              caplog):
    a, b = servers
    dead = _dead_url()
    result = _evaluate([a.url, dead, b.url], tmp_path, "out", "--set", f"small_lm.model={tiny_causal_path}")
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    for method in ("standard", "guided"):
        assert (metrics[method]["n"], metrics[method]["errors"], metrics[method]["em"]) == (N, 0, 1.0), method
    assert _chat_requests(a) > 0 and _chat_requests(b) > 0, "both live servers answer"
    assert _chat_requests(a) + _chat_requests(b) == 2 * N  # every call answered once: none repeated on a live one
    warning = [r.getMessage() for r in caplog.records if "cannot connect" in r.getMessage()]
    assert len(warning) == 1 and "?code=***" in warning[0] and "other 2 server(s)" in warning[0]
    for shown in (result.output, caplog.text):
        assert SECRET not in shown and URL_SECRET not in shown
    for file in (tmp_path / "cache").rglob("*"):  # keys are never cached, whichever server answered
        if file.is_file():
            data = file.read_bytes()
            assert SECRET.encode() not in data and URL_SECRET.encode() not in data, file

    # A rerun against another replica of the model is answered from the cache: the key holds no URL.
    from support.oracle_server import OracleServer

    with OracleServer(lambda body: "never asked") as c:
        again = _evaluate([c.url], tmp_path, "again", "--set", f"small_lm.model={tiny_causal_path}")
        assert again.exit_code == 0, again.output
        assert _chat_requests(c) == 0
    rerun = json.loads((tmp_path / "again" / "metrics.json").read_text())
    assert rerun["standard"]["em"] == rerun["guided"]["em"] == 1.0
    assert rerun["standard"]["usage"]["cached_calls"] == N


def test_a_failing_server_is_rested_and_its_calls_go_to_the_other(servers, tmp_path):
    a, b = servers
    a.fail_next(10_000, 500)
    result = _evaluate([a.url, b.url], tmp_path, "out", "--methods", "standard", "--set", "eval.concurrency=1")
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())["standard"]
    assert (metrics["n"], metrics["errors"], metrics["em"]) == (N, 0, 1.0)
    assert [r.status for r in a.records if r.method == "POST"] and all(
        r.status == 500 for r in a.records if r.method == "POST")
    assert _chat_requests(b) == N
    assert _chat_requests(a) < N // 2, "a failing server leaves the rotation for its cooldown"


def test_start_up_check_passes_with_one_live_server_and_fails_naming_all_when_none_answers(servers, tmp_path):
    from lmcot.config import ConfigError, load_config
    from lmcot.preflight import check_endpoint

    a, _ = servers
    dead, other = _dead_url(), _dead_url()
    check_endpoint(load_config(None, [f"large_lm.api_base=['{dead}', '{a.url}']"]).large_lm, "large_lm")
    with pytest.raises(ConfigError) as err:
        check_endpoint(load_config(None, [f"large_lm.api_base=['{dead}', '{other}']"]).large_lm, "large_lm")
    message = str(err.value)
    assert "none of the 2 servers answers" in message and message.count("cannot connect") == 2
    assert URL_SECRET not in message
    result = _evaluate([dead, other], tmp_path, "out", "--methods", "standard")
    assert result.exit_code == 2 and len(error_lines(result)) == 1 and URL_SECRET not in result.output


def test_typed_requests_with_logprobs_go_through_the_router_too(servers):
    """The judge's calls are typed dspy.lm15 Requests (with log-probabilities): the engine's other door."""
    from dspy.lm15 import Config, Message, Request, TextPart

    from lmcot.config import LargeLMConfig
    from lmcot.lms import build_lm

    a, b = servers
    lm = build_lm(LargeLMConfig(model="openai/oracle", api_base=[a.url, b.url], api_key_env=KEY_VAR, cache=False))
    request = Request(model=lm.model, messages=[Message.user([TextPart("Is Paris in France? Answer with Yes or No.")])],
                      config=Config(max_tokens=3, logprobs=2))
    response = lm(request)
    assert response.text.strip() and response.logprobs
    assert _chat_requests(a) + _chat_requests(b) == 1


def test_a_teacher_may_list_servers_too_and_the_key_settings_hold_no_server():
    from lmcot.config import load_config
    from lmcot.lms import build_lm
    from lmcot.http_lm import HttpLM
    from lmcot.http_lm import RouterEngine

    cfg = load_config(None, ["kd.teacher.model=openai/teacher", "kd.teacher.api_base=[http://a:8000/v1, http://b:8000/v1]",
                             "kd.teacher.extra={extra_body: {top_k: 20}}"])
    teacher = build_lm(cfg.teacher())
    assert isinstance(teacher.engine, RouterEngine) and teacher.engine.urls == ["http://a:8000/v1", "http://b:8000/v1"]
    assert isinstance(teacher, HttpLM)  # lmcot's total time bound and retries, as for one server
    # DSPy's cache key is the model, the messages and these settings: no server, key or timeout, but extra.
    assert not {"api_base", "api_key", "timeout"} & set(teacher.kwargs)
    assert teacher.kwargs["extra_body"] == {"top_k": 20}

"""Issue 16.4 and issue 20.14: how long a call to an HTTP model may take, and which failures are retried.

* 16.4: a server that answers GET (so the start-up probe passes) but hangs on POST took 6 tries of
  120 s to fail one question. One call, all its tries together, now ends within ``ROLE.total_timeout``
  with one line naming ``ROLE.api_base`` and ``ROLE.total_timeout``.
* 20.14: a host name that does not resolve and a refused connection are not transient: no retry, no
  backoff, the one-line message at once. 429, 5xx and timeouts are still retried.

No assertion on wall-clock windows: retries are counted on the server, backoff waits go through an
injected sleep, and a hung server holds its request until the test ends.
"""

from __future__ import annotations

import errno
import socket

import pytest

from lmcot.config import LargeLMConfig
from lmcot.errors import EndpointError, UserError
from lmcot.http_lm import HttpLM, unreachable_reason
from lmcot.preflight import check_endpoint
from lmcot.lms import build_lm
from support.oracle_server import OracleServer
from support.paths import HOTPOT
from support.reliability import assert_one_line_error, invoke

ANSWER = "[[ ## answer ## ]]\nParis\n\n[[ ## completed ## ]]"


@pytest.fixture()
def hung_on_post():
    """Answers GET at once (the start-up probe passes) and holds every completion until the test ends."""
    with OracleServer(lambda body: ANSWER) as srv:
        srv.hold_after(0)
        yield srv


@pytest.fixture()
def waits(monkeypatch):
    """The backoff waits HttpLM asked for, none of them slept."""
    asked: list[float] = []
    monkeypatch.setattr(HttpLM, "_sleep", staticmethod(asked.append))
    return asked


# ------------------------------------------------------------------ 16.4 a total bound per call


# A hang guard, not a measurement: without the bound this call waits for a reply that never comes.
@pytest.mark.timeout(60)
def test_a_server_that_hangs_on_post_fails_within_total_timeout_naming_the_keys(hung_on_post):
    cfg = LargeLMConfig(model="openai/oracle", api_base=hung_on_post.url, total_timeout=1.5, cache=False)
    check_endpoint(cfg, "large_lm")  # GET answers: the probe cannot catch this server
    lm = build_lm(cfg)
    with pytest.raises(EndpointError) as err:
        lm("What is the capital of France?")
    [post] = [r for r in hung_on_post.records if r.method == "POST"]
    assert post.status == 0, "the call ended only after the server answered: it waited the server out"
    message = str(err.value)
    assert message.startswith(f"large_lm.api_base={hung_on_post.url}: no reply within large_lm.total_timeout=1.5 s")
    assert "large_lm.timeout=120 s per try" in message and "\n" not in message
    assert isinstance(err.value, UserError)
    assert hung_on_post.request_count == 1, "no new try starts once the deadline has passed"


def test_the_role_named_in_the_message_is_the_config_key(hung_on_post):
    from lmcot.config import LMConfig

    lm = build_lm(LMConfig(model="openai/oracle", api_base=hung_on_post.url, total_timeout=0.5, cache=False),
                  role="kd.teacher")
    with pytest.raises(EndpointError, match=r"^kd\.teacher\.api_base=.*kd\.teacher\.total_timeout=0\.5 s"):
        lm("q")


def test_cli_reports_a_server_hung_on_post_in_one_line(hung_on_post, tmp_path):
    result = invoke(["evaluate", "--methods", "standard", "--limit", "1", "--out", tmp_path / "out",
                     "--set", f"data.dev={HOTPOT}", "--set", "large_lm.model=openai/oracle",
                     "--set", f"large_lm.api_base={hung_on_post.url}", "--set", "large_lm.total_timeout=1",
                     "--set", f"cache_dir={tmp_path / 'cache'}", "--set", "data.max_context_tokens=null"])
    assert_one_line_error(result, f"large_lm.api_base={hung_on_post.url}", "large_lm.total_timeout=1 s")


def test_transient_failures_are_retried_within_the_bound(waits):
    with OracleServer(lambda body: ANSWER) as srv:
        srv.fail_next(2, status=500)
        lm = build_lm(LargeLMConfig(model="openai/oracle", api_base=srv.url, num_retries=5, cache=False))
        assert "Paris" in lm("q")[0]
        assert srv.request_count == 3 and len(waits) == 2
        srv.fail_next(3, status=429)
        assert "Paris" in build_lm(LargeLMConfig(model="openai/oracle", api_base=srv.url, num_retries=5,
                                                 cache=False))("q2")[0]
        srv.fail_next(10, status=503)
        before = srv.request_count
        with pytest.raises(Exception) as err:
            build_lm(LargeLMConfig(model="openai/oracle", api_base=srv.url, num_retries=2, cache=False))("q3")
        assert srv.request_count - before == 3  # num_retries=2: three tries in all, then the provider's error
        assert not isinstance(err.value, EndpointError)


def test_no_wait_starts_that_would_end_past_the_deadline(monkeypatch):
    """An injected clock: each backoff moves time on; once the next wait would pass total_timeout the
    call ends with the bound's message instead of sleeping into it."""
    now = [0.0]
    monkeypatch.setattr(HttpLM, "_clock", staticmethod(lambda: now[0]))
    monkeypatch.setattr(HttpLM, "_sleep", staticmethod(lambda s: now.__setitem__(0, now[0] + s)))
    with OracleServer(lambda body: ANSWER) as srv:
        srv.retry_after_ms = None  # DSPy's own schedule: 1, 2, 4, 8 ... s
        srv.fail_next(100, status=500)
        lm = build_lm(LargeLMConfig(model="openai/oracle", api_base=srv.url, num_retries=10, total_timeout=10,
                                    cache=False))
        with pytest.raises(EndpointError, match=r"no reply within large_lm\.total_timeout=10 s \(4 tries"):
            lm("q")
        assert srv.request_count == 4  # waits 1 + 2 + 4 = 7 s; the next (8 s) would end past 10 s


# ------------------------------------------------------------------ 20.14 unreachable hosts fail at once


def test_a_refused_connection_is_not_retried(waits):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}/v1"
    lm = build_lm(LargeLMConfig(model="openai/x", api_base=closed, num_retries=5, cache=False))
    with pytest.raises(EndpointError, match=rf"^large_lm\.api_base={closed}: cannot connect \(Connection refused\)"):
        lm("q")
    assert waits == []


@pytest.fixture()
def no_such_host(monkeypatch):
    """Name resolution fails for one host, as a typo'd host name does (not every machine has DNS)."""
    real = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        if host in ("no-such-host.example", "api.openai.com"):
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def test_a_host_that_does_not_resolve_is_not_retried(no_such_host, waits):
    lm = build_lm(LargeLMConfig(model="openai/x", api_base="http://no-such-host.example:8000/v1", cache=False))
    with pytest.raises(EndpointError, match=r"cannot connect \(Name or service not known\)"):
        lm("q")
    assert waits == []


def test_cli_fails_at_once_when_the_providers_host_does_not_resolve(no_such_host, waits, monkeypatch, tmp_path):
    """No api_base (the provider's own endpoint, so no start-up probe): each call fails at once."""
    monkeypatch.setenv("LMCOT_TEST_KEY", "sk-test-not-a-real-key")
    result = invoke(["evaluate", "--methods", "standard", "--limit", "2", "--out", tmp_path / "out",
                     "--set", f"data.dev={HOTPOT}", "--set", "large_lm.model=openai/gpt-4o-mini",
                     "--set", "large_lm.api_key_env=LMCOT_TEST_KEY", "--set", f"cache_dir={tmp_path / 'cache'}",
                     "--set", "data.max_context_tokens=null"])
    assert_one_line_error(result, "large_lm.model=openai/gpt-4o-mini: cannot connect (Name or service not known)")
    assert waits == []


def test_a_missing_provider_key_fails_before_any_call_naming_the_variable(monkeypatch, tmp_path):
    """No api_base and no key: litellm reports the missing key only when called, as a retryable 500."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(UserError, match=r"^large_lm\.model=openai/gpt-4o-mini: .* needs OPENAI_API_KEY in the "
                                        r"environment, and it is not set; .*large_lm\.api_key_env"):
        check_endpoint(LargeLMConfig(model="openai/gpt-4o-mini"), "large_lm")
    check_endpoint(LargeLMConfig(model="hosted_vllm/m"), "large_lm")  # litellm names no key for it
    check_endpoint(LargeLMConfig(model="ollama/m"), "large_lm")  # a local server: no *_API_KEY needed
    # providers with other ways to a key (Azure's variables or Entra ID, ...) are left to the call
    for name in ("AZURE_API_KEY", "AZURE_API_BASE", "AZURE_API_VERSION", "REPLICATE_API_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", "not-a-real-key")
    check_endpoint(LargeLMConfig(model="azure/my-deployment"), "large_lm")
    monkeypatch.setenv("REPLICATE_API_TOKEN", "not-a-real-key")  # litellm reads it; its validator names another
    check_endpoint(LargeLMConfig(model="replicate/meta/llama"), "large_lm")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key")
    check_endpoint(LargeLMConfig(model="openai/gpt-4o-mini"), "large_lm")
    monkeypatch.delenv("OPENAI_API_KEY")
    result = invoke(["evaluate", "--methods", "standard", "--limit", "2", "--out", tmp_path / "out",
                     "--set", f"data.dev={HOTPOT}", "--set", "large_lm.model=openai/gpt-4o-mini",
                     "--set", f"cache_dir={tmp_path / 'cache'}", "--set", "data.max_context_tokens=null"])
    assert_one_line_error(result, "large_lm.model=openai/gpt-4o-mini: with no large_lm.api_base")
    assert not (tmp_path / "out").exists()


def test_a_client_without_its_key_is_not_retried(monkeypatch, waits):
    """From Python (no start-up check): the client refuses before sending; five retries would not mend it."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    lm = build_lm(LargeLMConfig(model="openai/x", num_retries=5, cache=False))
    with pytest.raises(EndpointError, match=r"^large_lm\.model=openai/x: the client sent nothing: Missing credentials"):
        lm("q")
    assert waits == []


def test_which_failures_count_as_unreachable():
    def chain(*excs):
        for outer, inner in zip(excs, excs[1:]):
            outer.__cause__ = inner
        return excs[0]

    assert unreachable_reason(chain(RuntimeError("Connection error."), OSError("x"),
                                    socket.gaierror(socket.EAI_NONAME, "Name or service not known")))
    assert unreachable_reason(chain(RuntimeError("x"), ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")))
    # "Temporary failure in name resolution" says what it is: retried.
    assert unreachable_reason(chain(RuntimeError("x"), socket.gaierror(socket.EAI_AGAIN, "Temporary failure"))) is None
    assert unreachable_reason(chain(RuntimeError("x"), TimeoutError("timed out"))) is None
    assert unreachable_reason(chain(RuntimeError("x"), ConnectionResetError(errno.ECONNRESET, "reset"))) is None


# ------------------------------------------------------------------ 16.13 unknown extra keys: warned once


def test_unknown_extra_keys_are_warned_once(caplog):
    import logging

    cfg = LargeLMConfig(model="openai/warn-once", api_base="http://127.0.0.1:9/v1",
                        extra={"temprature": 0.3, "top_logprobs": 2, "extra_body": {"x": 1}})
    with caplog.at_level(logging.WARNING, logger="lmcot.http_lm"):
        build_lm(cfg)
        build_lm(cfg)
    warned = [r.getMessage() for r in caplog.records if "extra." in r.getMessage()]
    assert len(warned) == 1 and warned[0].startswith("large_lm.extra.temprature: not a parameter litellm knows")

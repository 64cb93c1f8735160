"""Issue 7: what a hostile tester found. Each test here failed on the code before the fix.

1. a program folder never runs its own code, and refuses swapped or mismatched weights;
2. a garbled 200 reply is never cached: a rerun against a healthy server recovers (answers, judge;
   KD in tests/test_bootstrap.py);
3. a server that accepts but never answers is reported within a bound, naming the config keys;
4. no secret (URL userinfo, key query parameter, env key, camelCase extra) reaches a file or the output;
5. bad paths and numbers: one line naming the path or key, exit 2, nothing written, no paid call;
6. messages are plain text, never rich markup;
7. ``lmcot score`` edge cases, duplicate ids, and user errors vs bugs in the CLI;
8. (found later, by CI) a fresh process resuming with part of the replies cached calls concurrently without error.
(5-7 live in tests/test_bad_input.py.)
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading

import pytest

from lmcot.config import ConfigError, LargeLMConfig, config_from_dict
from support.oracle_responder import OracleResponder
from support.oracle_server import OracleServer
from support.paths import HOTPOT
from support.reliability import assert_one_line_error, invoke, program_folder



# ------------------------------------------------------------------ 1. program folders never run code


def test_program_folder_never_enables_remote_code(tmp_path, tiny_causal_path):
    from lmcot.programs import LMGuidedCoT
    from lmcot.programs.program_io import program_config

    marker = tmp_path / "marker"
    folder = program_folder(tmp_path, tiny_causal_path, trust=True, marker=marker)
    cfg = program_config(folder)
    assert not cfg.small_lm.trust_remote_code and not cfg.large_lm.trust_remote_code
    assert cfg.kd.teacher is None  # nothing beyond what defines the program comes from the folder
    program = LMGuidedCoT.from_folder(folder)
    assert program.small_lm is not None
    assert not marker.exists(), "loading a program folder ran the folder's own Python"


def test_remote_code_only_on_the_users_word_and_with_a_warning(tmp_path, tiny_causal_path):
    marker = tmp_path / "marker"
    folder = program_folder(tmp_path, tiny_causal_path, trust=True, marker=marker)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}/v1"  # stops the run right after the warnings
    plain = invoke(["evaluate", "--program", folder, "--methods", "guided", "--out", tmp_path / "o",
                    "--set", "data.dev=validation", "--set", f"large_lm.api_base={closed}"])
    assert plain.exit_code == 2 and "trust_remote_code=true" not in plain.output
    opted = invoke(["evaluate", "--program", folder, "--methods", "guided", "--out", tmp_path / "o",
                    "--set", "data.dev=validation", "--set", "small_lm.trust_remote_code=true",
                    "--set", f"large_lm.api_base={closed}"])
    assert opted.exit_code == 2
    warning = [line for line in opted.output.splitlines() if line.startswith("warning:")]
    assert warning and "small_lm.trust_remote_code=true" in warning[0] and str(folder / "small_lm") in warning[0]
    assert not marker.exists()


def test_swapped_weights_fail_to_load(tmp_path, tiny_causal_path):
    from safetensors.torch import load_file, save_file

    from lmcot.errors import ModelLoadError, UserError
    from lmcot.programs import LMGuidedCoT

    folder = program_folder(tmp_path, tiny_causal_path, trust=False)
    assert json.loads((folder / "program.json").read_text())["small_lm_sha256"]
    weights = folder / "small_lm" / "model.safetensors"
    tensors = load_file(weights)
    save_file({k: v + 0.5 for k, v in tensors.items()}, weights, metadata={"format": "pt"})
    with pytest.raises(ModelLoadError, match=r"small_lm: the weights changed since this program was saved") as err:
        LMGuidedCoT.from_folder(folder)
    assert isinstance(err.value, UserError) and "\n" not in str(err.value)


def test_weights_of_another_model_are_refused_not_loaded_at_random(tmp_path, tiny_causal_path, tiny_seq2seq_path):
    from lmcot.errors import ModelLoadError
    from lmcot.model_loading import load_model_and_tokenizer

    folder = tmp_path / "mixed"
    shutil.copytree(tiny_causal_path, folder)
    shutil.copy(tiny_seq2seq_path / "model.safetensors", folder / "model.safetensors")  # T5 weights, Llama config
    with pytest.raises(ModelLoadError, match=r"the weights do not match the model's config.json .*missing keys"):
        load_model_and_tokenizer(str(folder))


# ------------------------------------------------------------------ 2. garbled replies do not stick

GARBAGE = "@@ garbled reply with no field markers ##"


def _flaky_server(examples):
    healthy = OracleResponder([e.toDict() for e in examples])
    state = {"garble": True}
    server = OracleServer(lambda body: GARBAGE if state["garble"] else healthy(body))
    return server, state


@pytest.mark.parametrize("method", ["standard", "cot", "guided"])
def test_garbled_answer_is_not_cached_and_a_rerun_recovers(method, fresh_cache, hotpot_examples, tiny_causal_path):
    from dspy.utils.exceptions import AdapterParseError

    from lmcot.programs.evaluation import build_program
    from lmcot.lms import build_lm
    from lmcot.config import SmallLMConfig

    ex = hotpot_examples[0]
    server, state = _flaky_server(hotpot_examples)
    with server as srv:
        large = build_lm(LargeLMConfig(model="openai/oracle", api_base=srv.url, num_retries=0))
        small = build_lm(SmallLMConfig(model=str(tiny_causal_path), max_tokens=4)) if method == "guided" else None
        program = build_program(method, small, large, config_from_dict({}))
        with pytest.raises(Exception) as failed:
            program(question=ex.question, context=ex.context)
        if method == "guided":  # the failed answer call keeps the rationale that was written
            from lmcot.programs.lm_guided_cot import AnswerCallError

            assert isinstance(failed.value, AnswerCallError) and len(failed.value.rationales) == 1
            assert isinstance(failed.value.__cause__, AdapterParseError)
        else:
            assert isinstance(failed.value, AdapterParseError)
        tries = srv.request_count
        assert tries >= 3  # asked again (bounded), the garbled replies never cached
        state["garble"] = False
        assert program(question=ex.question, context=ex.context).answer == ex.answer
        assert srv.request_count > tries
        again = srv.request_count
        assert program(question=ex.question, context=ex.context).answer == ex.answer
        assert srv.request_count == again, "a healthy reply is cached as before"


def test_one_garbled_reply_is_retried_within_the_run(fresh_cache, hotpot_examples):
    from lmcot.lms import build_lm
    from lmcot.programs import StandardPrompting

    ex = hotpot_examples[1]
    healthy = OracleResponder([e.toDict() for e in hotpot_examples])
    calls = {"n": 0}

    def responder(body):
        calls["n"] += 1
        return GARBAGE if calls["n"] <= 2 else healthy(body)  # ChatAdapter's and its JSON fallback's tries

    with OracleServer(responder) as srv:
        program = StandardPrompting(build_lm(LargeLMConfig(model="openai/oracle", api_base=srv.url, num_retries=0)))
        assert program(question=ex.question, context=ex.context).answer == ex.answer


def test_garbled_judge_verdicts_are_not_cached_and_a_rerun_recovers(fresh_cache):
    from lmcot.lms import build_lm
    from lmcot.metrics.rationale.judge import JudgeScorer

    row = {"question": "Q?", "context": "T: s.", "rationale": "Because s."}
    state = {"garble": True}

    def responder(body):
        return "%%%" if state["garble"] else "Yes"

    with OracleServer(responder) as srv:
        srv.support_logprobs = False
        lm = build_lm(LargeLMConfig(model="openai/judge-garbled", api_base=srv.url, num_retries=0))
        assert JudgeScorer(lm, samples=2).score([row], ["fluency"]) == [{"fluency": 0.0}]
        state["garble"] = False
        assert JudgeScorer(lm, samples=2).score([row], ["fluency"]) == [{"fluency": 1.0}]


# ------------------------------------------------------------------ 3. hangs end within a bound


@pytest.fixture()
def silent_server():
    """Accepts connections on 127.0.0.1 and never sends a byte."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept():
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(sock.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    sock.close()


@pytest.fixture()
def probe_waits(monkeypatch):
    """The read timeouts set on http.client sockets (here only the start-up probe's): what bounds the
    wait for a silent server, read without timing the test."""
    import http.client

    waits: list[float | None] = []
    connect = http.client.HTTPConnection.connect

    class Recording:  # the connected socket, its settimeout() calls recorded
        def __init__(self, sock):
            self._sock = sock

        def settimeout(self, value):
            waits.append(value)
            self._sock.settimeout(value)

        def __getattr__(self, name):
            return getattr(self._sock, name)

    def recording_connect(conn):
        connect(conn)
        conn.sock = Recording(conn.sock)

    monkeypatch.setattr(http.client.HTTPConnection, "connect", recording_connect)
    return waits


# A hang guard, not a measurement: a probe without a read timeout waits on this server forever.
@pytest.mark.timeout(60)
def test_a_server_that_never_answers_fails_fast_naming_the_keys(silent_server, probe_waits):
    from lmcot.preflight import check_endpoint

    with pytest.raises(ConfigError) as err:
        check_endpoint(LargeLMConfig(model="openai/x", api_base=silent_server, timeout=1.0), "large_lm")
    assert probe_waits == [1.0], "the probe waits large_lm.timeout for the first byte, not longer"
    message = str(err.value)
    assert message.startswith(f"large_lm.api_base={silent_server}: ") and "large_lm.timeout" in message
    assert "no reply within 1 s" in message


def test_a_server_that_closes_without_replying_fails_fast():
    from lmcot.preflight import check_endpoint

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(4)

    def close_each():
        for _ in range(2):
            conn = sock.accept()[0]
            conn.recv(1024)
            conn.close()

    threading.Thread(target=close_each, daemon=True).start()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    try:
        with pytest.raises(ConfigError, match=r"^kd\.teacher\.api_base=.*closed the connection.*kd\.teacher\.timeout"):
            check_endpoint(LargeLMConfig(model="openai/x", api_base=url), "kd.teacher")
    finally:
        sock.close()


def test_default_bound_for_a_first_request_is_about_a_minute():
    import inspect

    from lmcot.preflight import PROBE_REPLY_TIMEOUT, check_endpoint

    connect = inspect.signature(check_endpoint).parameters["timeout"].default
    default_timeout = LargeLMConfig(model="openai/x").timeout
    assert connect + min(default_timeout, PROBE_REPLY_TIMEOUT) <= 60


@pytest.mark.timeout(120)  # a hang guard: without the probe's bound the run waits on this server
def test_cli_reports_a_silent_server_in_one_line(silent_server, probe_waits, tmp_path):
    result = invoke(["evaluate", "--methods", "standard", "--limit", "1", "--out", tmp_path / "out",
                     "--set", f"data.dev={HOTPOT}", "--set", "large_lm.model=openai/oracle",
                     "--set", f"large_lm.api_base={silent_server}", "--set", "large_lm.timeout=1",
                     "--set", f"cache_dir={tmp_path / 'cache'}", "--set", "data.max_context_tokens=null"])
    assert_one_line_error(result, f"large_lm.api_base={silent_server}", "no reply within 1 s", "large_lm.timeout")
    assert probe_waits == [1.0], "one probe, bounded by large_lm.timeout"
    assert not (tmp_path / "out").exists()  # stopped by the probe, before any call could wait


@pytest.mark.parametrize("url", ["not a url", "localhost:8000", "ftp://host/v1", "http://host:port/v1"])
def test_api_base_that_is_not_a_url_fails_at_config_time(url):
    with pytest.raises(ConfigError, match=r"large_lm\.api_base: .*not an http\(s\) URL"):
        config_from_dict({"large_lm": {"api_base": url}})


# ------------------------------------------------------------------ 4. secrets never written or shown

PASSWORD, QUERY_KEY, ENV_KEY = "PwSecret123xyz", "QSecret456xyz", "sk-envsecret789xyz"


def test_no_secret_in_any_file_or_output(tmp_path, hotpot_examples, monkeypatch, tiny_causal_path):
    monkeypatch.setenv("LMCOT_TEST_KEY", ENV_KEY)
    outputs = []
    with OracleServer(OracleResponder([e.toDict() for e in hotpot_examples])) as srv:
        # Issue 16.10: any query value is a secret (`?code=` as much as `?api-key=`), whatever its name.
        urls = [srv.url + f"?code={QUERY_KEY}", srv.url + f"?api-key={QUERY_KEY}&v=1"]
        for i, url in enumerate(urls):
            result = invoke(["evaluate", "--methods", "standard,cot", "--limit", "2", "--out", tmp_path / f"out{i}",
                             "--set", f"data.dev={HOTPOT}", "--set", "large_lm.model=openai/oracle",
                             "--set", f"large_lm.api_base={url}", "--set", "large_lm.api_key_env=LMCOT_TEST_KEY",
                             "--set", "large_lm.num_retries=0", "--set", f"cache_dir={tmp_path / f'cache{i}'}",
                             "--set", f"small_lm.model={tiny_causal_path}"])  # its tokenizer truncates contexts
            outputs.append(result.output)
            assert result.exit_code in (0, 2), result.output
            assert "Traceback" not in result.output
        # user:password@ in api_base: httpx would send it as Basic auth instead of the key; refused, not echoed.
        result = invoke(["evaluate", "--out", tmp_path / "refused", "--set",
                         f"large_lm.api_base={srv.url.replace('http://', f'http://user:{PASSWORD}@')}"])
        assert_one_line_error(result, "large_lm.api_base", "api_key_env")
        outputs.append(result.output)
    # The key itself in api_key_env, and a camelCase secret in extra: refused, never echoed.
    for setting in ("large_lm.api_key_env=" + ENV_KEY, "large_lm.extra.accessToken=" + ENV_KEY,
                    "large_lm.extra.X-Api-Key=" + ENV_KEY, "large_lm.extra.apiKey=" + ENV_KEY):
        result = invoke(["evaluate", "--out", tmp_path / "refused", "--set", setting])
        assert_one_line_error(result, "large_lm.")
        outputs.append(result.output)
    assert not (tmp_path / "refused").exists()
    for text in outputs:
        for secret in (PASSWORD, QUERY_KEY, ENV_KEY):
            assert secret not in text
    found = subprocess.run(["grep", "-rla", "-e", PASSWORD, "-e", QUERY_KEY, "-e", ENV_KEY, str(tmp_path)],
                           capture_output=True, text=True).stdout
    assert found == "", f"secrets written to: {found}"
    assert any((tmp_path / "cache0" / "replies").rglob("*.sqlite3")), "the cache was written (and searched)"


def test_redaction_rules():
    from lmcot.redact import is_secret_name, redact_url

    # Every query value and every userinfo, not a list of known names (issue 16.10).
    assert redact_url("https://u:K@h:8/v1?api_key=K2&sig=S&x=1") == "https://***@h:8/v1?api_key=***&sig=***&x=***"
    assert redact_url("https://h/api?code=K&empty=") == "https://h/api?code=***&empty="
    for name in ("accessToken", "X-Api-Key", "apiKey", "APIKEY", "access_token", "token", "sig", "Authorization"):
        assert is_secret_name(name), name
    for name in ("max_tokens", "temperature", "top_k", "num_retries", "keep"):
        assert not is_secret_name(name), name


# ------------------------------------------------------------------ 8. resuming with part of the replies cached

_RESUME_CHILD = """
import sys, threading, traceback
import dspy
from lmcot.config import LargeLMConfig
from lmcot.lms import build_lm, configure_cache
from lmcot.programs.signatures import Answer
cache_dir, url, questions = sys.argv[1], sys.argv[2], sys.argv[3].split(",")
configure_cache(cache_dir)
predictor = dspy.Predict(Answer)
predictor.lm = build_lm(LargeLMConfig(model="openai/oracle", api_base=url, num_retries=0))
errors = []
def ask(q):
    try:
        predictor(question=q, context="c", rationale="r")
    except Exception:
        errors.append(traceback.format_exc())
threads = [threading.Thread(target=ask, args=(q,)) for q in questions]
[t.start() for t in threads]
[t.join() for t in threads]
print(len(errors), "errors")
print(errors[0][-800:] if errors else "")
"""


@pytest.mark.slow
def test_a_fresh_process_with_some_replies_cached_calls_concurrently_without_error(tmp_path):
    """What a resumed evaluation does: in a new process, threads read cached replies (unpickling them
    imports litellm) while others make new calls (DSPy imports litellm lazily). On CPython 3.11 the
    two first imports raced into a half-initialised litellm and every call failed ("partially
    initialized module 'litellm'"); it failed 4 times out of 4 before lmcot.http_lm.import_litellm."""
    import sys

    cached = [f"cached question {i}" for i in range(8)]
    new = [f"new question {i}" for i in range(8)]
    with OracleServer(lambda body: "[[ ## answer ## ]]\nx\n\n[[ ## completed ## ]]") as srv:
        for questions in (cached, cached + new):
            out = subprocess.run([sys.executable, "-c", _RESUME_CHILD, str(tmp_path / "cache"), srv.url,
                                  ",".join(questions)], capture_output=True, text=True, timeout=300)
            assert out.returncode == 0, out.stderr[-2000:]
            assert out.stdout.startswith("0 errors"), out.stdout
        assert srv.request_count == len(cached) + len(new)  # the rerun paid only for the new questions

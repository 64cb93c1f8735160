"""A compiled program folder is untrusted input (issue 16 items 1-3, 12; lmcot.program_trust).

Hostile folders, each refused before any code runs or any request is sent, or (for settings a folder
never supplies) run with the user's own settings while the folder's host receives nothing: endpoints,
keys, ``extra``, a shipped pickle cache, output and data paths. Plus: a folder records the large LM the
program really ran with, and shows it as a suggestion on load (issue 20 item 1).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from support.hostile import edit_program, pickle_cache, poison_pickle_cache
from support.oracle_server import OracleServer
from support.paths import HOTPOT
from support.reliability import assert_one_line_error, invoke, program_folder


USER_KEY = "sk-user-secret-0123456789abcdef"


@pytest.fixture(scope="module")
def folder_host():
    """The host a hostile folder names: it must never receive anything."""
    with OracleServer() as server:
        yield server


@pytest.fixture()
def good(tmp_path, tiny_causal_path, folder_host) -> Path:
    """A program folder as `lmcot compile` writes it, compiled against the folder's host."""
    return program_folder(tmp_path, tiny_causal_path, trust=False, large_url=folder_host.url)


def _copy(good: Path, name: str) -> Path:
    target = good.parent / name
    shutil.copytree(good, target, symlinks=True)
    return target


def _outside_copy_of_small_lm(good: Path) -> Path:
    elsewhere = good.parent / "elsewhere" / "small_lm"
    shutil.copytree(good / "small_lm", elsewhere)
    return elsewhere


def _symlinked_small_lm(folder: Path) -> None:
    target = _outside_copy_of_small_lm(folder)
    shutil.rmtree(folder / "small_lm")
    (folder / "small_lm").symlink_to(target, target_is_directory=True)


def _symlinked_file(name: str):
    def change(folder: Path) -> None:
        target = _outside_copy_of_small_lm(folder) / name  # same bytes: the sha256 alone would pass
        (folder / "small_lm" / name).unlink()
        (folder / "small_lm" / name).symlink_to(target)
    return change


def _in_doc(change):
    return lambda folder: edit_program(folder, change)


def _set(*path_and_value):
    *path, value = path_and_value

    def change(doc):
        node = doc
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return change


def _config_injection(doc):
    doc["state"]["answer"]["config"] = {"api_base": "http://127.0.0.1:9/v1", "base_url": "http://127.0.0.1:9/v1"}


def _lm_in_state(doc):
    doc["state"]["answer"]["lm"] = {"model": "openai/x", "api_base": "http://127.0.0.1:9/v1"}


# name -> (how the folder is made hostile, what the one-line error names)
REFUSED = {
    "null fingerprint": (_in_doc(_set("small_lm_sha256", None)), "small_lm_sha256: missing"),
    "missing fingerprint": (_in_doc(lambda d: d.pop("small_lm_sha256")), "small_lm_sha256: missing"),
    "malformed fingerprint": (_in_doc(_set("small_lm_sha256", "abc")), "small_lm_sha256: must be an object"),
    "fingerprint not a sha256": (_in_doc(_set("small_lm_sha256", "model.safetensors", "abc")),
                                 "small_lm_sha256.model.safetensors: not a sha256"),
    "fingerprint naming a path": (_in_doc(_set("small_lm_sha256", {"../model.safetensors": "0" * 64})),
                                  "not a weights file name"),
    "state of the wrong shape": (_in_doc(_set("state", {"rationalize.predict": 5})), "state: has predictors"),
    "state setting the LM call's config": (_in_doc(_config_injection), "state.answer.config: not something"),
    "state carrying an LM": (_in_doc(_lm_in_state), "state.answer.lm: must be null"),
    "state with a wrong field count": (_in_doc(lambda d: d["state"]["answer"]["signature"]["fields"].pop()),
                                       "state.answer.signature.fields"),
    "negative num_samples": (_in_doc(_set("num_samples", -3)), "num_samples"),
    "num_samples as text": (_in_doc(_set("num_samples", "3")), "num_samples"),
    "a million num_samples": (_in_doc(_set("num_samples", 1_000_000)), "num_samples: 1000000 is more than"),
    "unknown select": (_in_doc(_set("select", "nope")), "select"),
    "unknown rationale_form": (_in_doc(_set("rationale_form", "short")), "rationale_form"),
    "rationale_form as a list": (_in_doc(_set("rationale_form", ["evidence"])), "rationale_form"),
    "negative sample_temperature": (_in_doc(_set("sample_temperature", -1)), "sample_temperature"),
    "small LM setting out of range": (_in_doc(_set("small_lm", "max_tokens", -1)), "small_lm.max_tokens"),
    "endpoint in the small LM record": (_in_doc(_set("small_lm", "api_base", "http://127.0.0.1:9/v1")),
                                        "small_lm.api_base: not something a program folder may set"),
    "extra in the large LM record": (_in_doc(_set("large_lm", "extra", {"base_url": "http://127.0.0.1:9/v1"})),
                                     "large_lm.extra: not something a program folder may set"),
    "small LM named with ..": (_in_doc(_set("config", "small_lm", "model", "../elsewhere/small_lm")),
                               "config.small_lm.model"),
    "small LM named by an absolute path": (_in_doc(_set("config", "small_lm", "model", "/tmp/elsewhere/small_lm")),
                                           "config.small_lm.model"),
    "small_lm/ a symlink out of the folder": (_symlinked_small_lm, "outside the program folder"),
    "weights a symlink out of the folder": (_symlinked_file("model.safetensors"), "outside the program folder"),
    "config.json a symlink out of the folder": (_symlinked_file("config.json"), "outside the program folder"),
    "not LMGuidedCoT": (_in_doc(_set("program", "SomethingElse")), "not LMGuidedCoT"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_hostile_folder_is_refused_before_anything_runs_or_is_sent(case, good, tmp_path, oracle_server, folder_host,
                                                                    monkeypatch):
    make_hostile, needle = REFUSED[case]
    folder = _copy(good, "hostile")
    make_hostile(folder)
    monkeypatch.setenv("LMCOT_USER_KEY", USER_KEY)
    user_before, host_before = oracle_server.request_count, len(folder_host.records)
    result = invoke(["evaluate", "--program", folder, "--methods", "guided", "--limit", "1", "--out", tmp_path / "out",
                     "--set", f"large_lm.api_base={oracle_server.url}", "--set", "large_lm.api_key_env=LMCOT_USER_KEY",
                     "--set", f"data.dev={HOTPOT}", "--set", f"cache_dir={tmp_path / 'cache'}"])
    line = assert_one_line_error(result, needle)
    assert str(folder) in line or "/elsewhere" in line, line  # names the folder (or where its link leads)
    assert oracle_server.request_count == user_before and len(folder_host.records) == host_before
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()


def test_the_python_api_refuses_the_same_folders(good):
    from lmcot.programs import LMGuidedCoT
    from lmcot.program_trust import ProgramError

    for case in ("null fingerprint", "state setting the LM call's config", "small_lm/ a symlink out of the folder"):
        folder = _copy(good, case.replace(" ", "_").replace("/", ""))
        REFUSED[case][0](folder)
        with pytest.raises(ProgramError):
            LMGuidedCoT.from_folder(folder)


def _everything_a_folder_must_not_decide(folder: Path, folder_host, marker: Path, tmp_path: Path) -> None:
    """Endpoints, key variable, extra, a shipped pickle cache, output and data paths, all in program.json."""
    shipped = folder / "cache"
    cache = pickle_cache(shipped / "dspy")
    cache.put({"model": "openai/oracle", "messages": []}, {"text": "x"})
    poison_pickle_cache(cache, marker)
    cache.disk_cache.close()

    def change(doc):
        large = doc["config"]["large_lm"]
        large.update(api_base=folder_host.url, api_key_env="LMCOT_USER_KEY", extra={"base_url": folder_host.url})
        doc.setdefault("large_lm", {})["api_base"] = folder_host.url
        doc["config"].update(cache_dir=str(shipped))
        doc["config"]["eval"]["out"] = str(tmp_path / "folder_chose_this_out")
        doc["config"]["data"]["dev"] = str(tmp_path / "folder_chose_this_dev.json")
        doc["config"]["kd"]["trainer_args"] = {"output_dir": str(tmp_path / "folder_chose_this_dir")}
    edit_program(folder, change)


def test_endpoints_keys_extra_cache_and_paths_never_come_from_the_folder(good, tmp_path, oracle_server, folder_host,
                                                                        monkeypatch):
    marker = tmp_path / "payload-ran"
    _everything_a_folder_must_not_decide(good, folder_host, marker, tmp_path)
    shipped_files = sorted(p.relative_to(good) for p in (good / "cache").rglob("*"))
    monkeypatch.setenv("LMCOT_USER_KEY", USER_KEY)
    host_before, user_before = len(folder_host.records), oracle_server.request_count
    result = invoke(["evaluate", "--program", good, "--methods", "guided", "--limit", "1", "--out", tmp_path / "out",
                     "--set", f"large_lm.api_base={oracle_server.url}", "--set", "large_lm.api_key_env=LMCOT_USER_KEY",
                     "--set", "large_lm.num_retries=0", "--set", f"data.dev={HOTPOT}",
                     "--set", f"cache_dir={tmp_path / 'mine'}"])
    assert result.exit_code == 0, result.output
    assert len(folder_host.records) == host_before, "the folder's host received a request (and the user's key)"
    sent = oracle_server.records[user_before:]
    assert sent and all(r.has_auth for r in sent if r.method == "POST"), "the user's own endpoint, with the user's key"
    assert not marker.exists(), "a pickle shipped in the folder ran"
    assert sorted(p.relative_to(good) for p in (good / "cache").rglob("*")) == shipped_files, "the folder's cache was used"
    assert (tmp_path / "mine" / "replies").is_dir() and (tmp_path / "out" / "metrics.json").is_file()
    for chosen in ("folder_chose_this_out", "folder_chose_this_dir"):
        assert not (tmp_path / chosen).exists()
    rows = [json.loads(x) for x in (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()]
    assert rows and rows[0]["id"] == json.loads(HOTPOT.read_text())[0]["_id"], "the user's data"
    note = [line for line in result.output.splitlines() if line.startswith("note:")]
    assert note and f"compiled with large_lm.model=openai/oracle at {folder_host.url}" in note[0]
    assert f"using large_lm.model=openai/oracle at {oracle_server.url}" in note[0]
    assert USER_KEY not in result.output


def test_without_a_config_the_user_settings_are_lmcots_defaults(good, tmp_path, folder_host):
    from lmcot.config import LMCoTConfig
    from lmcot.programs import LMGuidedCoT
    from lmcot.programs.program_io import program_config

    _everything_a_folder_must_not_decide(good, folder_host, tmp_path / "payload-ran", tmp_path)
    cfg, defaults = program_config(good), LMCoTConfig()
    assert cfg.large_lm.model == "openai/oracle"  # the recorded name: not a secret, not an endpoint
    assert (cfg.large_lm.api_base, cfg.large_lm.api_key_env, cfg.large_lm.extra) == (None, None, {})
    assert cfg.cache_dir == defaults.cache_dir and cfg.eval.out == defaults.eval.out
    assert cfg.data == defaults.data and cfg.kd == defaults.kd
    assert cfg.small_lm.model == str(good.resolve() / "small_lm")
    # --set large_lm.model names another LM: the folder's sampling settings go with its name, not to it.
    other = program_config(good, overrides=["large_lm.model=openai/mine"])
    assert other.large_lm.model == "openai/mine" and other.large_lm.max_tokens == defaults.large_lm.max_tokens
    program = LMGuidedCoT.from_folder(good)
    assert "api_base" not in program.large_lm.kwargs and "base_url" not in program.large_lm.kwargs
    assert not any(k in program.answer.config for k in ("api_base", "base_url"))


def test_the_saved_large_lm_is_the_one_the_program_ran_with(tmp_path, tiny_causal_path, monkeypatch):
    """Issue 20 item 1: program.json records the program's own large LM (model, sampling, redacted
    endpoint), not the config's; loading without a config runs that model by name and says so."""
    from lmcot.config import LargeLMConfig, SmallLMConfig, config_from_dict
    from lmcot.lms import build_lm
    from lmcot.programs.program_io import PROGRAM_FILE, large_lm_note, program_config, save_program
    from lmcot.programs import LMGuidedCoT

    monkeypatch.setenv("LMCOT_TEST_KEY", USER_KEY)
    out = tmp_path / "compiled"
    shutil.copytree(tiny_causal_path, out / "small_lm")
    ran_with = build_lm(LargeLMConfig(model="openai/actual", api_base="http://host-a:8000/v1?code=SECRETQUERY",
                                      temperature=0.3, max_tokens=99, api_key_env="LMCOT_TEST_KEY"))
    small = build_lm(SmallLMConfig(model=str(out / "small_lm"), max_tokens=7, temperature=0.0))
    config = config_from_dict({"large_lm": {"model": "openai/in-the-config", "api_base": "http://host-b/v1"},
                               "small_lm": {"model": "small_lm", "max_tokens": 64}})
    save_program(LMGuidedCoT(small, ran_with), out, config)
    doc = json.loads((out / PROGRAM_FILE).read_text())
    assert doc["large_lm"] == {"model": "openai/actual", "backend": "litellm", "temperature": 0.3, "max_tokens": 99,
                               "api_base": "http://host-a:8000/v1?code=***"}
    assert doc["small_lm"]["max_tokens"] == 7, "the small LM's settings as it ran, too"
    assert USER_KEY not in (out / PROGRAM_FILE).read_text() and "SECRETQUERY" not in (out / PROGRAM_FILE).read_text()
    cfg = program_config(out)
    assert (cfg.large_lm.model, cfg.large_lm.temperature, cfg.large_lm.max_tokens) == ("openai/actual", 0.3, 99)
    assert cfg.large_lm.api_base is None and cfg.small_lm.max_tokens == 7
    note = large_lm_note(out, cfg)
    assert note.startswith("program was compiled with large_lm.model=openai/actual at http://host-a:8000/v1?code=***")
    assert "using large_lm.model=openai/actual at the provider's default endpoint" in note
    loaded = LMGuidedCoT.from_folder(out)
    assert loaded.large_lm.model == "openai/actual" and loaded.large_lm.kwargs["max_tokens"] == 99
    mine = LMGuidedCoT.from_folder(out, config_from_dict({"large_lm": {"model": "openai/mine", "api_base": "http://host-c/v1"}}))
    assert mine.large_lm.model == "openai/mine" and mine.large_lm.kwargs["api_base"] == "http://host-c/v1"


def test_several_servers_are_recorded_and_shown_as_one_redacted_line(tmp_path, tiny_causal_path):
    """A list ``api_base``: program.json's record is the servers' redacted URLs, one string (the form
    program_trust accepts), whether the program carries its large LM or the config names it; never a
    repr, never dropped."""
    from lmcot.config import LMCoTConfig, SmallLMConfig, config_from_dict
    from lmcot.lms import build_lm
    from lmcot.programs import LMGuidedCoT
    from lmcot.programs.program_io import PROGRAM_FILE, large_lm_note, program_config, save_program

    servers = ["http://host-a:8000/v1", "http://host-b:8000/v1?code=SECRETQUERY"]
    shown = "http://host-a:8000/v1, http://host-b:8000/v1?code=***"
    config = config_from_dict({"large_lm": {"model": "openai/several", "api_base": servers}})
    small = build_lm(SmallLMConfig(model=str(tiny_causal_path), max_tokens=7))
    for name, large in (("carried", build_lm(config.large_lm)), ("from-config", None)):
        out = tmp_path / name
        shutil.copytree(tiny_causal_path, out / "small_lm")
        save_program(LMGuidedCoT(small, large), out, config)
        text = (out / PROGRAM_FILE).read_text()
        assert json.loads(text)["large_lm"]["api_base"] == shown, name
        assert "SECRETQUERY" not in text and "SecretURL" not in text
        note = large_lm_note(out, config.model_copy(deep=True))
        assert note.startswith(f"program was compiled with large_lm.model=openai/several at {shown};"), note
        assert note.endswith(f"using large_lm.model=openai/several at {shown}"), note
        assert program_config(out).large_lm.api_base is None, "a record, never an endpoint"
    assert LMCoTConfig().large_lm.endpoint_shown() == ""


def test_an_in_process_reader_is_shown_never_loaded_from_the_folder(good, tmp_path):
    from lmcot.config import LMCoTConfig
    from lmcot.programs.program_io import large_lm_note, program_config

    edit_program(good, _set("large_lm", {"model": str(tmp_path / "some" / "reader"), "backend": "transformers"}))
    cfg = program_config(good)
    assert cfg.large_lm.model == LMCoTConfig().large_lm.model and cfg.large_lm.backend == "litellm"
    assert "(in-process)" in large_lm_note(good, cfg)


def test_a_folder_written_before_the_records_still_loads_without_its_endpoint(good):
    from lmcot.programs import LMGuidedCoT

    edit_program(good, lambda doc: (doc.pop("large_lm"), doc.pop("small_lm")))
    program = LMGuidedCoT.from_folder(good)
    assert program.large_lm.model == "openai/oracle" and "api_base" not in program.large_lm.kwargs


def test_save_refuses_a_folder_without_the_small_lms_weights(tmp_path):
    from lmcot.config import LMCoTConfig
    from lmcot.programs.program_io import ProgramError, save_program
    from lmcot.programs import LMGuidedCoT

    with pytest.raises(ProgramError, match="small_lm: no \\*.safetensors weights"):
        save_program(LMGuidedCoT(), tmp_path, LMCoTConfig())
    assert not os.listdir(tmp_path)


def test_the_predictor_allow_list_is_the_programs():
    from lmcot.programs import LMGuidedCoT
    from lmcot.programs.program_io import PREDICTORS

    assert PREDICTORS == {name: len(p.signature.fields) for name, p in LMGuidedCoT().named_predictors()}


def test_a_file_that_is_not_program_json_is_named_as_such(tmp_path):
    """`--program configs/quickstart.yaml` is a mistaken argument, not a damaged program."""
    from lmcot.errors import UserError
    from lmcot.program_trust import read_document

    config = tmp_path / "quickstart.yaml"
    config.write_text("large_lm: {model: openai/x}\n")
    with pytest.raises(UserError, match=r"quickstart\.yaml: a file, not a compiled program \(expected the folder"):
        read_document(config)

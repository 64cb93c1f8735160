"""The config a user writes (YAML + ``--set``) is read exactly, and every mistake is named."""

from __future__ import annotations

import json

import pytest
from support.paths import ROOT

from lmcot.config import ConfigError, LargeLMConfig, LMCoTConfig, config_from_dict, load_config

SECRET = "sk-test-SECRET123"


def write(tmp_path, text: str, name: str = "cfg.yaml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


YAML = """\
small_lm:
  model: Qwen/Qwen2.5-0.5B-Instruct
  max_tokens: 96
large_lm:
  model: openai/gpt-4o-mini
  temperature: 0.2
  api_key_env: OPENAI_API_KEY
data:
  dataset: 2wiki
  dev: data/dev.json
eval:
  methods: [standard, guided]
  num_samples: 5
stages: [kd, rl]
"""


def test_yaml_is_loaded_into_typed_sections(tmp_path):
    cfg = load_config(write(tmp_path, YAML))
    assert cfg.small_lm.model == "Qwen/Qwen2.5-0.5B-Instruct"
    assert cfg.small_lm.max_tokens == 96
    assert cfg.small_lm.backend == "transformers"  # the small LM's default backend
    assert cfg.large_lm.backend == "litellm"
    assert cfg.large_lm.temperature == 0.2
    assert cfg.data.dataset == "2wiki" and cfg.data.dev == "data/dev.json"
    assert cfg.eval.methods == ["standard", "guided"]
    assert cfg.eval.num_samples == 5
    assert cfg.stages == ["kd", "rl"]
    # keys not in the file keep their defaults
    assert cfg.eval.concurrency == LMCoTConfig().eval.concurrency


def test_empty_yaml_file_gives_defaults(tmp_path):
    assert load_config(write(tmp_path, "")) == LMCoTConfig()


def test_no_file_gives_defaults_plus_overrides():
    cfg = load_config(None, ["eval.num_samples=3"])
    assert cfg.eval.num_samples == 3
    assert cfg.large_lm == LMCoTConfig().large_lm


def test_set_overrides_have_yaml_types(tmp_path):
    cfg = load_config(
        write(tmp_path, YAML),
        [
            "large_lm.temperature=0.7",  # float
            "small_lm.max_tokens=32",  # int
            "large_lm.cache=false",  # bool
            "data.skip_bad=true",
            "large_lm.seed=null",  # null
            "data.dev_limit=10",
            "eval.methods=[cot, guided]",  # list
            "small_lm.model=tiny-random/llama",  # a string containing '/' and '-'
            "large_lm.api_base=http://127.0.0.1:8000/v1",  # a value containing ':' and '='-free url
        ],
    )
    assert cfg.large_lm.temperature == 0.7
    assert cfg.small_lm.max_tokens == 32 and isinstance(cfg.small_lm.max_tokens, int)
    assert cfg.large_lm.cache is False
    assert cfg.data.skip_bad is True
    assert cfg.large_lm.seed is None
    assert cfg.data.dev_limit == 10
    assert cfg.eval.methods == ["cot", "guided"]
    assert cfg.small_lm.model == "tiny-random/llama"
    assert cfg.large_lm.api_base.get_secret_value() == "http://127.0.0.1:8000/v1"  # a SecretURL
    # the rest of the file is untouched
    assert cfg.data.dataset == "2wiki"


def test_set_wins_over_yaml_and_later_set_wins(tmp_path):
    cfg = load_config(write(tmp_path, YAML), ["eval.num_samples=2", "eval.num_samples=7"])
    assert cfg.eval.num_samples == 7


def test_value_may_contain_equals_sign():
    cfg = load_config(None, ["large_lm.model=openai/a=b"])
    assert cfg.large_lm.model == "openai/a=b"


@pytest.mark.parametrize("value, expected", [("kd,rl", ["kd", "rl"]), ("rl", ["rl"]), ("[kd]", ["kd"]),
                                             ("kd, rl", ["kd", "rl"])])
def test_stages_comma_list(value, expected):
    assert load_config(None, [f"stages={value}"]).stages == expected


@pytest.mark.parametrize("item, expected", [
    ("data.answer_regex=Answer: (.+)", "Answer: (.+)"),  # a colon, not a mapping
    ("data.answer_regex=The answer is (.+) #", "The answer is (.+) #"),  # no comments on a command line
    ("data.answer_regex=####\\s*(.+)$", "####\\s*(.+)$"),
])
def test_a_set_value_that_yaml_would_misread_stays_text(item, expected):
    cfg = load_config(None, ["data.dataset=custom", item])
    assert cfg.data.answer_regex == expected


@pytest.mark.parametrize("item, key, expected", [
    ("data.fields=question: problem", "fields", {"question": "problem"}),  # a mapping setting keeps YAML's form
    ("data.fields={question: problem}", "fields", {"question": "problem"}),
    ("large_lm.extra=top_k: 5", "extra", {"top_k": 5}),
])
def test_a_mapping_setting_still_reads_a_key_value_pair(item, key, expected):
    cfg = load_config(None, ["data.dataset=custom", item])
    assert getattr(cfg.data if key == "fields" else cfg.large_lm, key) == expected


def test_an_error_in_the_file_is_not_blamed_on_an_unrelated_set(tmp_path):
    path = write(tmp_path, "data:\n  dataset: custom\n  answer_type: label\n  labels: [A, a]\n")
    with pytest.raises(ConfigError) as exc:
        load_config(path, ["data.dev=x.json"])
    assert str(exc.value).startswith(f"{path}: data: ")


def test_dates_and_yaml_1_1_numbers_stay_text_in_files_and_sets(tmp_path):
    """No config value is a date; "010" (a label) is not octal 8 and "1:30" is not 90."""
    path = tmp_path / "c.yaml"
    path.write_text("large_lm:\n  extra: {api_version: 2024-06-01}\ndata:\n  dataset: custom\n"
                    "  answer_type: label\n  labels: [010, 1:30, 1:30.5, 7, 0.5]\n")
    cfg = load_config(path, ["small_lm.extra.api_version=2025-01-31"])
    assert cfg.large_lm.extra == {"api_version": "2024-06-01"}
    assert cfg.small_lm.extra == {"api_version": "2025-01-31"}
    assert cfg.data.labels == ["010", "1:30", "1:30.5", "7", "0.5"]
    with pytest.raises(ConfigError, match="eval.concurrency"):  # refused, where YAML 1.1 read 8
        load_config(None, ["eval.concurrency=010"])


@pytest.mark.parametrize("value, expected", [("q_proj,v_proj", ["q_proj", "v_proj"]), ("all-linear", "all-linear"),
                                             ("q_proj", ["q_proj"]),
                                             ("[q_proj]", ["q_proj"]), (".*(q|v){1,2}_proj", ".*(q|v){1,2}_proj")])
def test_lora_target_modules_comma_list(value, expected):
    assert load_config(None, [f"kd.lora_target_modules={value}"]).kd.lora_target_modules == expected


def test_set_creates_nested_sections():
    cfg = load_config(None, ["kd.teacher.model=openai/gpt-4o", "rl.weights.fluency=0.5"])
    assert cfg.kd.teacher is not None and cfg.kd.teacher.model == "openai/gpt-4o"
    assert cfg.teacher().model == "openai/gpt-4o"
    assert cfg.rl.weights.fluency == 0.5 and cfg.rl.weights.factuality == 1.0
    # without a teacher, the large LM teaches
    assert load_config(None, []).teacher() == load_config(None, []).large_lm


def test_unknown_key_in_yaml_names_file_and_dotted_key(tmp_path):
    path = write(tmp_path, "small_lm:\n  modle: x\n")
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    msg = str(exc.value)
    assert str(path) in msg
    assert "small_lm.modle" in msg
    assert "unknown key" in msg
    assert "\n" not in msg


def test_unknown_top_level_section(tmp_path):
    path = write(tmp_path, "evaluation:\n  limit: 3\n")
    with pytest.raises(ConfigError, match=r"evaluation: unknown key"):
        load_config(path)


@pytest.mark.parametrize("item, message", [
    ("small_lm.max_token=10", "--set: small_lm.max_token: unknown key; did you mean small_lm.max_tokens?"),
    ("stages=kd,foo", "--set: stages.1: Input should be 'kd' or 'rl'"),
    ("evaluation.limit=3", "--set: evaluation: unknown key"),
])
def test_an_error_in_a_set_value_is_not_blamed_on_the_file(tmp_path, item, message):
    path = write(tmp_path, "eval:\n  concurrency: 2\n")
    with pytest.raises(ConfigError) as exc:
        load_config(path, [item])
    assert str(exc.value) == message


def test_a_misspelled_key_in_the_file_is_named_with_the_file_and_a_suggestion(tmp_path):
    with pytest.raises(ConfigError) as exc:
        load_config(write(tmp_path, "eval:\n  concurency: 2\n"), ["eval.concurrency=3"])
    assert str(exc.value) == f"{tmp_path / 'cfg.yaml'}: eval.concurency: unknown key; did you mean eval.concurrency?"


def test_unknown_key_from_set_is_named():
    with pytest.raises(ConfigError, match=r"large_lm\.temprature: unknown key"):
        load_config(None, ["large_lm.temprature=0.3"])


def test_bad_type_message_names_key_and_problem(tmp_path):
    path = write(tmp_path, "eval:\n  num_samples: many\n")
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    msg = str(exc.value)
    assert msg.startswith(f"{path}: eval.num_samples: ")
    assert "integer" in msg


@pytest.mark.parametrize("override, key", [
    ("eval.num_samples=0", "eval.num_samples"),  # ge=1
    ("data.dataset=squad", "data.dataset"),  # not one of the datasets
    ("stages=kd,sft", "stages"),
    ("small_lm.dtype=float8", "small_lm.dtype"),
])
def test_out_of_range_values_are_refused(override, key):
    with pytest.raises(ConfigError, match=rf"^config: {key.replace('.', r'.')}"):
        load_config(None, [override])


def test_invalid_yaml_names_file_and_line(tmp_path):
    path = write(tmp_path, "small_lm:\n  model: a\n  max_tokens: [1, 2\nlarge_lm:\n  model: b\n")
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    msg = str(exc.value)
    assert str(path) in msg and "invalid YAML" in msg
    line = int(msg.split(" line ")[1].split()[0])
    assert 3 <= line <= 5  # where the unclosed list is (YAML reports where it noticed)


def test_top_level_must_be_mapping(tmp_path):
    with pytest.raises(ConfigError, match="mapping"):
        load_config(write(tmp_path, "- a\n- b\n"))


def test_missing_file(tmp_path):
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match="no such config file") as exc:
        load_config(path)
    assert str(path) in str(exc.value)


@pytest.mark.parametrize("item", ["large_lm.temperature", "=3", "."])
def test_malformed_set_items(item):
    with pytest.raises(ConfigError, match="--set"):
        load_config(None, [item])


def test_eval_select_is_checked_where_it_is_set():
    assert load_config(None, ["eval.select=quality:coherence"]).eval.select == "quality:coherence"
    with pytest.raises(ConfigError, match=r"eval\.select.*'vote', 'quality' or 'quality:<aspect>'"):
        load_config(None, ["eval.select=quality:wit"])


def test_a_set_without_equals_is_not_echoed():
    # An API key pasted as `--set sk-...` must not reach the terminal or a CI log.
    secret = "sk-" + "Zq8" * 12
    with pytest.raises(ConfigError, match="--set number 2 has no '='") as exc:
        load_config(None, ["eval.concurrency=2", secret])
    assert secret not in str(exc.value) and "Zq8" not in str(exc.value)
    for pasted in ("hf_" + "Zq8" * 12, "large_lm.Zq8" + "x" * 30, "ghp_" + "Zq8" * 12):  # not a config key: hidden
        with pytest.raises(ConfigError, match="has no '='") as exc:
            load_config(None, [pasted])
        assert "Zq8" not in str(exc.value)


def test_a_config_key_without_a_value_is_named():
    with pytest.raises(ConfigError) as exc:
        load_config(None, ["small_lm.max_tokens"])
    assert str(exc.value) == "--set small_lm.max_tokens: no '=' and no value: expected small_lm.max_tokens=value"


def test_set_into_a_value_that_is_not_a_section(tmp_path):
    with pytest.raises(ConfigError, match="'model' is not a section"):
        load_config(write(tmp_path, YAML), ["large_lm.model.name=x"])
    with pytest.raises(ConfigError, match=r"large_lm\.model: "):  # model not in the file: a type error
        load_config(None, ["large_lm.model.name=x"])


def test_api_key_read_from_named_env_var(monkeypatch):
    from lmcot.http_lm import api_key

    monkeypatch.setenv("LMCOT_TEST_KEY", SECRET)
    cfg = load_config(None, ["large_lm.api_key_env=LMCOT_TEST_KEY"])
    assert api_key(cfg.large_lm) == SECRET
    # read at call time, never stored on the config
    monkeypatch.setenv("LMCOT_TEST_KEY", "sk-rotated")
    assert api_key(cfg.large_lm) == "sk-rotated"
    assert SECRET not in json.dumps(cfg.to_public_dict())


def test_api_key_env_takes_names_and_refuses_keys():
    """A key pasted where its variable's name belongs is refused; upper-case names that start like a
    key's prefix (HF_TOKEN) are names."""
    from lmcot.config_types import looks_like_a_key

    for name in ("OPENAI_API_KEY", "HF_TOKEN", "SK_SERVE_KEY", "AKIA_PROFILE", "GHP_BACKUP", "_private"):
        assert not looks_like_a_key(name), name
        assert load_config(None, [f"large_lm.api_key_env={name}"]).large_lm.api_key_env == name
    for key in ("sk-proj-abc123", "hf_AbCdEfGhIjKlMn", "ghp_abcdefghijklmnopqrstu", "AKIAIOSFODNN7EXAMPLE",
                "AIzaSyA1b2C3d4", "xoxb-123-456", "abcdefghijklmnopqrstuvwxyz0123456789", "LMCOT_KEY\n", "a b"):
        assert looks_like_a_key(key), key


def test_no_api_key_env_means_no_key():
    from lmcot.http_lm import api_key

    assert api_key(LargeLMConfig()) is None


def test_unset_key_variable_is_a_clear_error(monkeypatch):
    from lmcot.http_lm import api_key

    monkeypatch.delenv("LMCOT_TEST_MISSING_KEY", raising=False)
    cfg = load_config(None, ["large_lm.api_key_env=LMCOT_TEST_MISSING_KEY"])
    with pytest.raises(ConfigError, match="LMCOT_TEST_MISSING_KEY.*not set"):
        api_key(cfg.large_lm)
    monkeypatch.setenv("LMCOT_TEST_MISSING_KEY", "")  # empty counts as unset
    with pytest.raises(ConfigError, match="LMCOT_TEST_MISSING_KEY"):
        api_key(cfg.large_lm)


def test_public_dict_is_the_config_and_round_trips(monkeypatch, tmp_path):
    monkeypatch.setenv("LMCOT_TEST_KEY", SECRET)
    cfg = load_config(write(tmp_path, YAML), ["large_lm.api_key_env=LMCOT_TEST_KEY"])
    public = cfg.to_public_dict()
    text = json.dumps(public)  # JSON-serialisable as written beside results
    assert SECRET not in text
    assert public["large_lm"]["api_key_env"] == "LMCOT_TEST_KEY"  # the variable's name is kept
    assert config_from_dict(json.loads(text)) == cfg


@pytest.mark.parametrize("key", ["api_key", "API_KEY", "token", "authorization"])
def test_secret_in_extra_is_refused(key):
    with pytest.raises(ConfigError) as exc:
        config_from_dict({"large_lm": {"model": "openai/x", "extra": {key: SECRET}}}, source="run.yaml")
    msg = str(exc.value)
    assert msg.startswith("run.yaml: large_lm.extra")
    assert "api_key_env" in msg
    assert SECRET not in msg


def test_secret_in_extra_via_set_is_refused():
    with pytest.raises(ConfigError, match="large_lm.extra"):
        load_config(None, [f"large_lm.extra.api_key={SECRET}"])


@pytest.mark.parametrize("key", ["api_base", "base_url", "engine"])
def test_extra_cannot_choose_the_endpoint_or_engine(key):
    with pytest.raises(ConfigError, match=rf"large_lm\.extra.*{key}"):
        config_from_dict({"large_lm": {"model": "openai/x", "extra": {key: "http://h:1/v1"}}})


def test_harmless_extra_is_kept():
    cfg = load_config(None, ["large_lm.extra.drop_params=true"])
    assert cfg.large_lm.extra == {"drop_params": True}


def test_assignment_is_validated():
    cfg = LMCoTConfig()
    with pytest.raises(ValueError):
        cfg.eval.num_samples = 0


def test_rationale_metric_backends_fill_in_and_refuse_unknown_aspects():
    cfg = load_config(None, ["rationale_metrics.backends={factuality: judge}"])
    assert cfg.rationale_metrics.backends["factuality"] == "judge"
    assert cfg.rationale_metrics.backends["fluency"] == "cheap"
    assert len(cfg.rationale_metrics.backends) == 8
    with pytest.raises(ConfigError, match="rationale_metrics.backends"):
        load_config(None, ["rationale_metrics.backends={factualty: judge}"])


def test_the_aspect_table_drives_config_judge_and_cheap_scorers():
    """Adding an aspect is one row in lmcot.aspects.TABLE: everything else is derived from it."""
    from lmcot.aspects import ASPECTS, TABLE
    from lmcot.config import REWARDS, LMCoTConfig
    from lmcot.metrics.rationale.cheap import CHEAP_SCORERS
    from lmcot.metrics.rationale.judge import ASPECT_QUESTIONS

    cfg = LMCoTConfig()
    assert ASPECTS == tuple(a.name for a in TABLE) and REWARDS == (*ASPECTS, "answer_f1")
    assert list(cfg.rl.weights.model_dump()) == list(REWARDS)
    assert list(cfg.rationale_metrics.backends) == list(ASPECTS)
    assert list(ASPECT_QUESTIONS) == list(CHEAP_SCORERS) == list(ASPECTS)


@pytest.mark.parametrize("override", [
    "large_lm.extra.extra_headers.Authorization=Bearer sk-LEAK",
    "large_lm.extra.aws_secret_access_key=LEAK",
    "kd.teacher.extra.access_token=LEAK",
])
def test_credentials_anywhere_in_extra_are_refused(override):
    from lmcot.config import ConfigError, load_config

    cfg_args = [override] + (["kd.teacher.model=openai/x"] if override.startswith("kd.") else [])
    with pytest.raises(ConfigError, match="secrets do not belong"):
        load_config(None, cfg_args)


def test_ordinary_extra_keys_are_fine():
    from lmcot.config import load_config

    cfg = load_config(None, ["large_lm.extra.max_completion_tokens=5", "large_lm.extra.frequency_penalty=0.1"])
    assert cfg.large_lm.extra == {"max_completion_tokens": 5, "frequency_penalty": 0.1}


@pytest.mark.parametrize("name", ["quickstart.yaml", "hotpotqa.yaml"])
def test_shipped_configs_validate(name):
    from lmcot.config import load_config

    cfg = load_config(ROOT / "configs" / name)
    # The quickstart runs KD alone within its 15 minutes (issue 15); its rl section stays valid for --set stages=[kd,rl].
    assert cfg.stages == (["kd"] if name == "quickstart.yaml" else ["kd", "rl"])
    if name == "quickstart.yaml":
        assert (ROOT / cfg.data.train).is_file() and (ROOT / cfg.data.dev).is_file()

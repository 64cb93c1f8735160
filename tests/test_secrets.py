"""Issue 16.10 and issue 19.6: a URL's credentials are a type, redacted once at the config boundary.

``api_base`` is a ``SecretURL``: printing, saving and messages show it with every query value and any
userinfo hidden, and only the HTTP client gets the real URL. ``user:password@`` is refused (httpx
would send it as Basic auth instead of the key); a redacted copy read back from a saved file is
ignored rather than sent. (The end-to-end "no secret in any file" check is in test_reliability.py.)
"""

from __future__ import annotations

import json
import logging

import pytest

from lmcot.config import ConfigError, LargeLMConfig, config_from_dict, load_config
from lmcot.redact import SecretURL

KEY = "Zq8SecretValue42"


def test_api_base_is_redacted_by_its_type_everywhere_it_is_shown():
    cfg = load_config(None, [f"large_lm.api_base=https://fn.example.com/api/v1?code={KEY}&region=eu"])
    api_base = cfg.large_lm.api_base
    assert isinstance(api_base, SecretURL)
    assert api_base.get_secret_value() == f"https://fn.example.com/api/v1?code={KEY}&region=eu"
    shown = "https://fn.example.com/api/v1?code=***&region=***"
    assert str(api_base) == shown and KEY not in repr(api_base) and KEY not in repr(cfg)
    assert cfg.to_public_dict()["large_lm"]["api_base"] == shown
    assert KEY not in cfg.model_dump_json() and KEY not in json.dumps(cfg.to_public_dict())
    assert KEY not in f"{cfg.large_lm}"


def test_the_client_gets_the_real_url(monkeypatch):
    from lmcot.lms import build_lm

    lm = build_lm(LargeLMConfig(model="openai/x", api_base=f"http://127.0.0.1:9/v1?code={KEY}"))
    assert lm.kwargs["api_base"] == f"http://127.0.0.1:9/v1?code={KEY}"


def test_dspy_save_of_a_program_never_writes_the_url_credentials(tmp_path):
    """DSPy's own ``program.save()`` records each predictor's LM through ``dump_state``."""
    import dspy

    from lmcot.lms import build_lm

    lm = build_lm(LargeLMConfig(model="openai/x", api_base=f"http://127.0.0.1:9/v1?code={KEY}"))
    program = dspy.Predict("question -> answer")
    program.set_lm(lm)
    program.save(str(tmp_path / "p.json"))
    saved = (tmp_path / "p.json").read_text()
    assert KEY not in saved and "http://127.0.0.1:9/v1?code=***" in saved
    assert lm.kwargs["api_base"].endswith(KEY)  # the live client still has the real URL


def test_userinfo_in_api_base_is_refused_without_echoing_it():
    with pytest.raises(ConfigError) as err:
        load_config(None, [f"large_lm.api_base=https://user:{KEY}@host/v1"])
    message = str(err.value)
    assert message.startswith("config: large_lm.api_base: ") and "api_key_env" in message and "Basic auth" in message
    assert KEY not in message


@pytest.mark.parametrize("saved", ["http://***@127.0.0.1:8000/v1", "http://127.0.0.1:8000/v1?code=***"])
def test_a_redacted_api_base_read_back_from_a_saved_file_is_ignored_not_sent(saved, caplog):
    """config.json / program.json hold the redacted form; reloading them must work, and "***" must
    never be taken for a credential or a URL to connect to."""
    with caplog.at_level(logging.WARNING):
        cfg = config_from_dict({"large_lm": {"model": "openai/x", "api_base": saved}}, source="config.json")
    assert cfg.large_lm.api_base is None
    assert "saved with its credentials hidden" in caplog.text


def test_a_plain_api_base_survives_saving_and_reloading():
    cfg = load_config(None, ["large_lm.api_base=http://127.0.0.1:8000/v1"])
    again = config_from_dict(json.loads(json.dumps(cfg.to_public_dict())))
    assert again.large_lm.api_base.get_secret_value() == "http://127.0.0.1:8000/v1"
    assert config_from_dict(cfg.model_dump()).large_lm.api_base == cfg.large_lm.api_base  # python mode keeps the value


@pytest.mark.parametrize("setting", ["large_lm.extra.base_url=http://elsewhere/v1",
                                     "large_lm.extra.api_base=http://elsewhere/v1",
                                     f"large_lm.extra.extra_query.code={KEY}"])
def test_endpoint_and_query_settings_in_extra_are_refused(setting):
    """``extra.base_url`` would bypass api_base's checks and redaction; a query block may carry a key."""
    with pytest.raises(ConfigError, match=r"^config: large_lm\.extra: ") as err:
        load_config(None, [setting])
    assert KEY not in str(err.value)


def test_an_api_base_set_around_validation_is_checked_where_the_client_is_built():
    """``model_copy(update=...)`` skips pydantic's validation; build_lm validates before using it."""
    from lmcot.lms import build_lm

    base = LargeLMConfig(model="openai/x")
    with pytest.raises(ConfigError, match=r"^large_lm\.api_base: .*Basic auth") as err:
        build_lm(base.model_copy(update={"api_base": f"http://user:{KEY}@127.0.0.1:9/v1"}))
    assert KEY not in str(err.value)
    lm = build_lm(base.model_copy(update={"api_base": "http://127.0.0.1:9/v1"}))
    assert lm.kwargs["api_base"] == "http://127.0.0.1:9/v1"


def test_secrets_are_registered_where_they_enter(monkeypatch):
    """Issue 19.6: a secret is registered once, where it enters the process: an ``api_base``'s query
    values by the SecretURL when it is made (at config validation), a key when it is read from the
    environment (``lmcot.http_lm.api_key``, the one reader), also for a config copied or built around
    validation. The value read stays registered after the variable changes."""
    from lmcot.http_lm import api_key
    from lmcot.redact import redact

    # Registered secrets live for the process: earlier tests' keys (e.g. "sk-test") would mask parts of this one.
    monkeypatch.setattr("lmcot.redact._SECRETS", set())
    url_code, key = "Qv7UrlCode0099", "sk-test-registered-when-read-314"
    load_config(None, [f"large_lm.api_base=https://fn.example.com/v1?code={url_code}"])
    assert redact(f"GET /v1?x=1 failed for {url_code}") == "GET /v1?x=1 failed for ***"

    monkeypatch.setenv("LMCOT_TEST_KEY_19_6", key)
    copied = LargeLMConfig(model="openai/x").model_copy(update={"api_key_env": "LMCOT_TEST_KEY_19_6"})
    assert redact(f"Bearer {key}") == f"Bearer {key}"  # not read yet: not known
    assert api_key(copied) == key
    monkeypatch.setenv("LMCOT_TEST_KEY_19_6", "sk-rotated-later-0001")
    assert redact(f"Bearer {key}") == "Bearer ***"


def test_keys_named_at_run_time_are_read_only_through_secret_from_env():
    """``lmcot.redact.secret_from_env`` is the one reader of keys (it registers the value for redaction as
    it is read): no shipped module reads an environment variable whose name comes from the user
    (``api_key_env``, ``--api-key-env``) any other way. Variables with a fixed name (RANK, COLUMNS) hold
    no secret and may be read directly."""
    import ast

    from support.paths import ROOT

    def reads_environ(node: ast.AST) -> ast.AST | None:
        """The name expression of ``os.environ.get(X)``, ``os.getenv(X)`` or ``os.environ[X]``."""
        if isinstance(node, ast.Call) and node.args and isinstance(node.func, ast.Attribute):
            func = node.func
            if func.attr == "getenv" or (func.attr == "get" and isinstance(func.value, ast.Attribute)
                                         and func.value.attr == "environ"):
                return node.args[0]
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute) and node.value.attr == "environ":
            return node.slice
        return None

    found = []
    for folder in ("lmcot", "metrics", "programs", "optimizers", "experiment", "commands"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path == ROOT / "lmcot" / "redact.py":
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                name = reads_environ(node)
                if name is not None and not isinstance(name, ast.Constant):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert found == [], f"read a user-named variable with secret_from_env: {found}"


def test_serve_reads_its_bearer_key_registered_and_never_shows_it(monkeypatch, tmp_path):
    """``lmcot serve --api-key-env NAME``: the key is registered for redaction as it is read, so a
    failure after reading it (here: no program folder) shows neither the key nor a traceback."""
    from lmcot.redact import redact
    from support.reliability import invoke

    key = "serve-bearer-SECRET-6613"
    monkeypatch.setenv("LMCOT_TEST_SERVE_BEARER", key)
    result = invoke(["serve", "--program", tmp_path / "missing", "--port", "0", "--api-key-env",
                     "LMCOT_TEST_SERVE_BEARER", "--set", f"cache_dir={tmp_path / 'cache'}"])
    assert result.exit_code == 2 and key not in result.output and "Traceback" not in result.output, result.output
    assert redact(f"Authorization: Bearer {key}") == "Authorization: Bearer ***"

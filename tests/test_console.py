"""What the commands print before they work: the settings that differ from the defaults (the whole
config with --verbose, and always in OUT/config.json), and `lmcot --version`."""

from __future__ import annotations

import json
import tomllib

from typer.testing import CliRunner

from lmcot.commands.cli import app
from support.paths import ROOT


def test_config_changes_lists_only_what_differs_from_the_defaults():
    from lmcot.config import LMCoTConfig, config_changes, load_config

    assert config_changes(LMCoTConfig()) == {}
    cfg = load_config(None, ["kd.max_steps=16", "rl.weights.answer_f1=2", "stages=[kd,rl]",
                             "kd.teacher.model=openai/gpt-4o", "large_lm.api_base=https://h.example/v1?code=sk-SECRET"])
    changes = config_changes(cfg)
    assert changes["kd.max_steps"] == 16 and changes["rl.weights.answer_f1"] == 2.0
    assert changes["stages"] == ["kd", "rl"]
    # A section unset by default lists its keys; secrets stay redacted.
    assert changes["kd.teacher.model"] == "openai/gpt-4o" and "kd.teacher.temperature" in changes
    assert "SECRET" not in json.dumps(changes)
    assert "kd.num_samples" not in changes and "rl.weights.factuality" not in changes


def _evaluate(tmp_path, *extra: str):
    # Nobody listens on port 9: the command stops at its endpoint check, after printing the config.
    return CliRunner().invoke(app, ["evaluate", "--out", str(tmp_path / "out"), "--set", "kd.max_steps=16",
                                    "--set", "large_lm.api_base=http://127.0.0.1:9", *extra])


def test_commands_print_only_the_settings_that_differ(tmp_path):
    result = _evaluate(tmp_path)
    assert result.exit_code == 2
    lines = result.output.splitlines()
    assert lines[0] == (f"config: 2 setting(s) differ from the defaults; all settings: {tmp_path / 'out' / 'config.json'} "
                        "(--verbose prints all)")
    assert lines[1:3] == ["  large_lm: api_base=http://127.0.0.1:9", "  kd: max_steps=16"]
    assert "resolved config" not in result.output and "num_train_epochs" not in result.output
    assert len(lines) < 6


def test_verbose_prints_the_whole_config(tmp_path):
    result = _evaluate(tmp_path, "--verbose")
    assert "resolved config" in result.output
    assert "num_train_epochs: 3.0" in result.output and "max_steps: 16" in result.output


def test_version_names_lmcot_and_the_libraries_it_runs_on():
    import lmcot

    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    line = result.output.strip()
    assert line.startswith(f"lmcot {project} (dspy ") and lmcot.__version__ == project
    for library in ("transformers", "trl", "torch", "litellm", "python"):
        assert f"{library} " in line

"""Helpers shared by the reliability and bad-input tests: the CLI runner with its one-line-error
checks, and a program folder as `lmcot compile` writes it (optionally shipping remote code)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from typer.testing import CliRunner

from lmcot.commands.cli import app
from lmcot.config import config_from_dict


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



EVIL = '''
import pathlib
pathlib.Path({marker!r}).write_text("ran")
from transformers import LlamaConfig, LlamaForCausalLM
class EvilConfig(LlamaConfig):
    pass
class EvilModel(LlamaForCausalLM):
    config_class = EvilConfig
'''


def program_folder(tmp_path: Path, tiny_causal_path: Path, *, trust: bool, marker: Path | None = None,
                    large_url: str = "http://127.0.0.1:9/v1") -> Path:
    """A program folder as `lmcot compile` writes it, around a copy of the tiny model."""
    from lmcot.programs.program_io import save_program
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

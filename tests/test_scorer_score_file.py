"""`lmcot score` is a thin command over lmcot.metrics.rationale.score_file, the library that does the work."""

from __future__ import annotations

import ast
import json
from pathlib import Path

from lmcot.config import config_from_dict
from lmcot.metrics.rationale import reference_name
from lmcot.metrics.rationale.score_file import choose_scorer

ROOT = Path(__file__).resolve().parents[1]


def test_the_command_module_is_main_and_its_table():
    tree = ast.parse((ROOT / "commands" / "score.py").read_text(encoding="utf-8"))
    defined = {node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.ClassDef))}
    assert defined == {"main", "render_score_table"}


def test_the_program_beside_the_file_is_read_with_the_given_reader(tmp_path, tiny_causal_path):
    program = tmp_path / "prog"
    program.mkdir()
    (program / "program.json").write_text("{}")
    (tmp_path / "config.json").write_text(json.dumps({"program": str(program)}))
    rationales = tmp_path / "predictions.jsonl"
    read = []

    def program_config(folder):
        read.append(folder)
        return config_from_dict({"small_lm": {"model": str(tiny_causal_path), "trust_remote_code": True}})

    cfg, reference, why = choose_scorer(config_from_dict({}), rationales, explicit=False, program_config=program_config)
    assert read == [str(program)]
    assert reference_name(reference) == cfg.small_lm.model == str(tiny_causal_path)
    # A file beside the data never turns on running a model's code.
    assert cfg.small_lm.trust_remote_code is False and reference.trust_remote_code is False
    assert why.endswith(f"from the program {program} that wrote predictions.jsonl (named in {tmp_path / 'config.json'})")
    # With --config, the program beside the file is not read.
    choose_scorer(config_from_dict({}), rationales, explicit=True, program_config=program_config)
    assert read == [str(program)]

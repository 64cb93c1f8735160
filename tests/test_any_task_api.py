"""The README's Python example (docs/examples/any_task.py, shown verbatim in the README) runs: splits from a
config's data section, a trainset of plain dspy.Example with no data section, a user metric, compile,
evaluate and reload. The tiny random student and the scripted stand-in take the place of the real LMs."""

from __future__ import annotations

import re
import runpy
import shutil
import sys

import pytest

from support.paths import ROOT

EXAMPLE = ROOT / "docs" / "examples" / "any_task.py"


def test_the_readme_shows_the_example_file_verbatim():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", readme, re.DOTALL)
    assert EXAMPLE.read_text(encoding="utf-8") in blocks


@pytest.fixture(scope="module")
def server():
    from support.oracle_responder import OracleResponder
    from support.oracle_server import OracleServer, config_examples

    responder = OracleResponder(config_examples(str(ROOT / "configs" / "gsm8k-quickstart.yaml")),
                                rationale_sensitive=True)
    with OracleServer(responder) as srv:
        yield srv


@pytest.mark.slow  # KD of the tiny student and three small evaluations
def test_the_example_compiles_evaluates_and_reloads(server, tiny_causal_path, tmp_path, monkeypatch, capsys):
    shutil.copytree(ROOT / "configs", tmp_path / "configs")  # the example reads configs/ from where it runs
    monkeypatch.chdir(tmp_path)
    overrides = [f"small_lm.model={tiny_causal_path}", "small_lm.max_tokens=8", f"large_lm.api_base={server.url}",
                 "data.dev_limit=2", "kd.max_steps=1", "kd.batch_size=3", f"cache_dir={tmp_path / 'cache'}"]
    monkeypatch.setattr(sys, "argv", [str(EXAMPLE), *overrides])
    before = len(server.requests)
    scope = runpy.run_path(str(EXAMPLE), run_name="__main__")
    printed = capsys.readouterr().out
    assert re.search(r"dev: EM \d\.\d{3}, within 1%: \d\.\d{3} \(n=2\)", printed), printed
    assert len(scope["trainset"]) == 3 and len(scope["valset"]) == 2
    assert (tmp_path / "runs" / "any-task" / "program.json").is_file()
    assert scope["again"].small_lm.model != scope["small"].model  # the trained student, reloaded
    # KD learnt from the examples' own rationales (kd.source: dataset): every request was a dev answer
    assert all("rationale" in str(body["messages"]) for body in server.requests[before:])

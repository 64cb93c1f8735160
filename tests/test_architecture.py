"""The import direction (docs/DESIGN.md): library code never imports the command layer, and the
installed package carries no test or demo infrastructure."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from support.paths import ROOT

COMMANDS = {"lmcot.cli", "lmcot.evaluate", "lmcot.score"}
LIBRARY = [p for d in ("programs", "optimizers", "metrics", "lmcot") for p in sorted((ROOT / d).rglob("*.py"))
           if p.relative_to(ROOT).as_posix() not in {"lmcot/cli.py", "lmcot/evaluate.py", "lmcot/score.py",
                                                     "lmcot/__main__.py"}]  # `python -m lmcot` is the command


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


@pytest.mark.parametrize("path", LIBRARY, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_library_does_not_import_the_command_layer(path):
    bad = sorted(n for n in _imports(path) if n in COMMANDS or any(n.startswith(c + ".") for c in COMMANDS))
    assert not bad, f"{path.relative_to(ROOT)} imports the command layer: {bad}"


def test_no_test_infrastructure_in_the_package():
    shipped = {p.relative_to(ROOT).as_posix() for d in ("programs", "optimizers", "metrics", "lmcot")
               for p in (ROOT / d).rglob("*.py")}
    assert not any("testing" in p or "tiny" in p or "oracle" in p for p in shipped), shipped
    for path in LIBRARY:
        assert not any(n.startswith("support") for n in _imports(path)), path

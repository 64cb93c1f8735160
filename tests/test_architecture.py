"""The floor plan (docs/DESIGN.md): each top folder is one layer, and imports point down only.

    commands/    lmcot.commands     the `lmcot` command line: parse, call one library function, print, write
    experiment/  lmcot.experiment   the paper's analyses in one run (drives the compiler)
    optimizers/  lmcot.optimizers   the compiler and its stages (KD, RL)
    programs/    lmcot.programs     signatures, modules, the evaluation loop, program folders
    metrics/     lmcot.metrics      answer metrics, rationale-quality scorers
    lmcot/       lmcot              core: config, LMs and the engine, cache, data, files, console

Every import counts, at module level or inside a function, and a relative one (``from .x import y``)
as Python resolves it against the importing module's package: a module imports only its own layer or
the layers below, and no group of modules imports itself round in a circle. The package's face
(``lmcot/__init__.py``, which lends higher names lazily by string) and ``lmcot/__main__.py`` (the
`python -m lmcot` entry, the command itself) stand outside the order; a name taken from the face
(``from lmcot import evaluate_from_config``) counts as an import of the module that defines it, as does
``importlib.import_module("lmcot.x")``.
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest
from support.paths import ROOT

# Lowest first: (folder on disk, package it installs as).
LAYERS = [("lmcot", "lmcot"), ("metrics", "lmcot.metrics"), ("programs", "lmcot.programs"),
          ("optimizers", "lmcot.optimizers"), ("experiment", "lmcot.experiment"), ("commands", "lmcot.commands")]
OUTSIDE_THE_ORDER = {"lmcot", "lmcot.__main__"}


def _module_name(path: Path) -> str:
    folder, *rest = path.relative_to(ROOT).with_suffix("").parts
    parts = dict(LAYERS)[folder].split(".") + rest
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for folder, _ in LAYERS for p in sorted((ROOT / folder).rglob("*.py"))}


def _layer(module: str) -> int:
    # The longest package prefix wins: lmcot.metrics.x is metrics, lmcot.x is core.
    return max((i for i, (_, pkg) in enumerate(LAYERS) if module == pkg or module.startswith(pkg + ".")),
               key=lambda i: len(LAYERS[i][1]))


def _package_of(path: Path) -> str:
    """The package a module's relative imports start from: itself for an ``__init__.py``, else its parent."""
    module = _module_name(path)
    return module if path.name == "__init__.py" else module.rpartition(".")[0]


def _imports(path: Path, package: str | None = None) -> dict[str, int]:
    """lmcot modules this file imports (anywhere in it, functions included, relative imports resolved
    against ``package``, by default the file's own) -> first line."""
    found: dict[str, int] = {}
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level and package is None:
                package = _package_of(path)
            # As Python resolves it: `.` is the package itself, each further dot one package up.
            module = importlib.util.resolve_name("." * node.level + (node.module or ""), package)
            names = [f"{module}.{a.name}" for a in node.names]
        elif (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "lmcot"
              and node.attr in FACE_LENDS):  # `import lmcot` ... `lmcot.evaluate_from_config(...)`
            names = [f"lmcot.{node.attr}"]
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"
              and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            names = [node.args[0].value]  # importlib.import_module("lmcot.x")
        for name in names:  # each name of `from pkg import a, b` on its own: pkg.a and pkg.b may both be modules
            face, _, lent = name.rpartition(".")
            if face == "lmcot" and lent in FACE_LENDS:  # a name the face lends counts as an import of its module
                name = FACE_LENDS[lent]
            while name and name not in MODULES:  # `from pkg import name`: the module is pkg or pkg.name
                name = name.rpartition(".")[0]
            if name and name.startswith("lmcot"):
                found.setdefault(name, node.lineno)
    return found


def _face_lends() -> dict[str, str]:
    """The package face's lazy names -> the module that defines each (``lmcot/__init__.py``'s ``_LAZY``)."""
    tree = ast.parse((ROOT / "lmcot" / "__init__.py").read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "_LAZY" for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError("lmcot/__init__.py has no _LAZY table: teach the checker how the face lends names")


FACE_LENDS = _face_lends()


GRAPH = {m: {t: line for t, line in _imports(p).items() if t != m} for m, p in MODULES.items()}


@pytest.mark.parametrize("module", sorted(set(MODULES) - OUTSIDE_THE_ORDER))
def test_no_module_imports_a_higher_layer(module):
    here = _layer(module)
    up = [f"{MODULES[module].relative_to(ROOT)}:{line} imports {target} ({LAYERS[_layer(target)][0]}/)"
          for target, line in sorted(GRAPH[module].items()) if _layer(target) > here and target not in OUTSIDE_THE_ORDER]
    assert not up, f"{module} is in {LAYERS[here][0]}/, which may import only lower layers: " + "; ".join(up)


def _circles() -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan), over the ordered modules."""
    nodes = sorted(set(MODULES) - OUTSIDE_THE_ORDER)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH[v]:
            if w in OUTSIDE_THE_ORDER:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                circles.append(sorted(group))

    for v in nodes:
        if v not in index:
            visit(v)
    return circles


def test_no_circles():
    circles = _circles()
    detail = ["; ".join(f"{a} -> {b} (line {GRAPH[a][b]})" for a in c for b in c if b in GRAPH[a]) for c in circles]
    assert not circles, "modules that import each other in a circle: " + " | ".join(detail)


def test_the_checker_sees_imports_inside_functions(tmp_path):
    # A guard against a checker that passes because it reads nothing.
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from lmcot.commands.cli import app\n    import lmcot.programs.evaluation\n")
    assert set(_imports(probe)) == {"lmcot.commands.cli", "lmcot.programs.evaluation"}
    assert _layer("lmcot.commands.cli") > _layer("lmcot.programs.evaluation") > _layer("lmcot.metrics.answer") \
        > _layer("lmcot.config")


def test_the_checker_sees_through_the_package_face(tmp_path):
    # `from lmcot import evaluate_from_config` reaches programs/ through the face's lazy table: it counts as
    # an import of lmcot.programs.evaluation, not of the face (which stands outside the order).
    probe = tmp_path / "probe.py"
    probe.write_text("import importlib\nimport lmcot\n"
                     "def f():\n    from lmcot import evaluate_from_config, load_config\n"
                     "def g():\n    return lmcot.evaluate_methods\n"
                     "def h():\n    return importlib.import_module('lmcot.optimizers.compiler')\n")
    found = _imports(probe, package="lmcot")
    assert {"lmcot.programs.evaluation", "lmcot.config", "lmcot.optimizers.compiler"} <= set(found)
    assert found["lmcot.programs.evaluation"] == 4
    assert FACE_LENDS["evaluate_from_config"] == "lmcot.programs.evaluation"
    assert all(target in MODULES for target in FACE_LENDS.values()), "the face lends a name from a module that is gone"


def test_the_checker_resolves_relative_imports(tmp_path):
    # A relative import counts as its absolute twin: `..optimizers` seen from programs/ is a higher layer.
    probe = tmp_path / "probe.py"
    probe.write_text("from . import adapter\nfrom .evaluation import evaluate_program\nfrom .. import config\n"
                     "def f():\n    from ..optimizers.compiler import LMCoTCompiler\n")
    found = _imports(probe, package="lmcot.programs")
    assert set(found) == {"lmcot.programs.adapter", "lmcot.programs.evaluation", "lmcot.config",
                          "lmcot.optimizers.compiler"}
    assert found["lmcot.optimizers.compiler"] == 5 and _layer("lmcot.optimizers.compiler") > _layer("lmcot.programs")
    # Each name of one `from pkg import a, b` counts, and a file's own package comes from where it lies.
    both = tmp_path / "both.py"
    both.write_text("from lmcot.optimizers import distill, rl_grpo\n")
    assert set(_imports(both)) == {"lmcot.optimizers.distill", "lmcot.optimizers.rl_grpo"}
    assert _package_of(ROOT / "metrics" / "rationale" / "scorer.py") == "lmcot.metrics.rationale"
    assert _package_of(ROOT / "metrics" / "rationale" / "__init__.py") == "lmcot.metrics.rationale"
    # The real tree's relative imports are in the graph: metrics/__init__.py's `from .answer import ...`.
    assert "lmcot.metrics.answer" in GRAPH["lmcot.metrics"]
    assert "lmcot.metrics.rationale.models" in GRAPH["lmcot.metrics.rationale.scorer"]
    with pytest.raises(ImportError, match="beyond top-level package"):
        too_far = tmp_path / "too_far.py"
        too_far.write_text("from ...x import y\n")
        _imports(too_far, package="lmcot.programs")


def test_every_folder_is_installed_as_its_layer():
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    for folder, package in LAYERS:
        assert f'"{package}" = "{folder}"' in pyproject, f"{folder}/ is not installed as {package}"


def test_no_test_infrastructure_in_the_package():
    shipped = {p.relative_to(ROOT).as_posix() for p in MODULES.values()}
    assert not any("testing" in p or "tiny" in p or "oracle" in p for p in shipped), shipped
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        assert not any(n == "support" or n.startswith("support.") for n in imported), path


def test_test_modules_never_import_each_other():
    # Shared helpers live in tests/support/; a test module importing another runs its fixtures twice.
    for path in sorted((ROOT / "tests").glob("test_*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        bad = sorted(n for n in imported if n.split(".")[0].startswith("test_") or n.startswith("tests."))
        assert not bad, f"{path.name} imports {bad}: move what they share to tests/support/"

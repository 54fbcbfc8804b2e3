"""Import hygiene: no import cycle inside ``analogdecorr``, and the command line imports only what a command needs.

The cycle check reads the source with ``ast`` (nothing is imported). Every ``import``/``from ... import`` that
names a module of the package is an edge, wherever it stands: at module level and inside functions. A deferred
(function-level) import does not break start-up, but it is still a dependency: two modules that need each
other are one idea split in two, and the deferral only hides it (analog.py <-> drift.py was such a pair). Only
imports under ``if TYPE_CHECKING:`` are left out: they exist for the type checker, never at run time.
``from pkg import name`` is an edge to the submodule ``pkg.name`` when there is one, else to ``pkg`` itself.
Importing a submodule also runs its parents' ``__init__``; those implicit edges are not counted (every module
would then depend on the package's ``__init__``).
"""

from __future__ import annotations

import argparse
import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from analogdecorr.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "analogdecorr"


def _module_names(package_dir: Path, package: str) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file of the package (``__init__.py`` names its package)."""
    names = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = [package, *path.relative_to(package_dir).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement in the tree, at any depth, except the bodies of ``if TYPE_CHECKING:``."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def import_graph(package_dir: Path, package: str = PACKAGE) -> dict[str, set[str]]:
    """module -> the package's modules it imports (module-level and function-level imports alike)."""
    modules = _module_names(package_dir, package)
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        here = name.split(".") if is_package else name.split(".")[:-1]  # the package a relative import starts in
        for node in _imports(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                if node.level:
                    base = here[: len(here) - (node.level - 1)]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                for alias in node.names:
                    sub = f"{source}.{alias.name}"
                    targets.append(sub if sub in modules else source)
            for target in targets:
                while target and target not in modules:  # import a.b.c of a non-module attribute: its module
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def strong_components(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (each module sorted by name)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(v: str) -> None:  # Tarjan; the package has a few dozen modules, recursion depth is no concern
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return components


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (as a closed path a -> ... -> a) per strongly connected component with more than one module."""
    return [_cycle_in(graph, component) for component in strong_components(graph)]


def _cycle_in(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    """A shortest closed path through the component's first module (breadth-first inside the component)."""
    start, members = component[0], set(component)
    parents: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & members):
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(parents[path[-1]])
                    return [start, *reversed(path[:-1]), start] if len(path) > 1 else [start, v, start]
                if w not in parents:
                    parents[w] = v
                    nxt.append(w)
        frontier = nxt
    raise AssertionError(f"no cycle through {start} in {component}")  # a component always has one


# ------------------------------------------------------------------------------------------ the checker itself


def _write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / "pkg" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root / "pkg"


def test_checker_finds_a_cycle_through_a_function_level_import(tmp_path: Path) -> None:
    pkg = _write(tmp_path, {
        "__init__.py": "",
        "a.py": "from .b import f\n",
        "b.py": "def f():\n    from pkg.a import g\n",
        "sub/__init__.py": "from .c import x\n",
        "sub/c.py": "from .. import a\n",
    })
    graph = import_graph(pkg, "pkg")
    assert graph["pkg.a"] == {"pkg.b"} and graph["pkg.b"] == {"pkg.a"}
    assert graph["pkg.sub"] == {"pkg.sub.c"} and graph["pkg.sub.c"] == {"pkg.a"}  # from .. import <submodule>
    assert find_cycles(graph) == [["pkg.a", "pkg.b", "pkg.a"]]


def test_checker_ignores_type_checking_imports_and_reports_longer_cycles(tmp_path: Path) -> None:
    pkg = _write(tmp_path, {
        "__init__.py": "from .a import A\n",
        "a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .c import C\nimport pkg.b\n",
        "b.py": "from pkg.c import C\n",
        "c.py": "from . import d\n",
        "d.py": "import pkg.a as a\n",
    })
    graph = import_graph(pkg, "pkg")
    assert graph["pkg.a"] == {"pkg.b"}  # the TYPE_CHECKING import of c is not an edge
    assert find_cycles(graph) == [["pkg.a", "pkg.b", "pkg.c", "pkg.d", "pkg.a"]]


# ------------------------------------------------------------------------------------------ the package


def test_no_import_cycle_in_the_package() -> None:
    graph = import_graph(ROOT / PACKAGE)
    assert "analogdecorr.backends.analog" in graph and graph["analogdecorr.train"]  # the walk saw the package
    found = [f"{' -> '.join(_cycle_in(graph, c))}  (modules in the circle: {', '.join(c)})"
             for c in strong_components(graph)]
    assert not found, "import cycles inside analogdecorr:\n" + "\n".join(found)


def _imported_modules(*args: str) -> set[str]:
    """Top-level names of every module ``python -X importtime -m analogdecorr.cli ARGS`` imports."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-X", "importtime", "-m", "analogdecorr.cli", *args],
                         capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    names = set()
    for line in out.stderr.splitlines():  # "import time:  self [us] | cumulative | imported package"
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            if name != "imported package":
                names.add(name.split(".")[0])
    assert "analogdecorr" in names and "argparse" in names  # the listing was parsed
    return names


@pytest.mark.parametrize(
    ("args", "absent"),
    [(("hdl", "export", "--help"), "torch"), (("train", "--help"), "amaranth"), (("--help",), "torch")],
)
def test_cli_help_imports_only_what_the_command_needs(args: tuple[str, ...], absent: str) -> None:
    assert absent not in _imported_modules(*args)


def _subcommand_help(parser: argparse.ArgumentParser, name: str) -> str:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return next(a.help for a in sub._choices_actions if a.dest == name)


def test_cli_stubs_have_the_help_of_the_commands_they_stand_for() -> None:
    """The top-level help lists train and hdl from stubs; their lines must be the real parsers' lines."""
    for name in ("train", "hdl"):
        stub = _subcommand_help(build_parser(["plot"]), name)
        real = _subcommand_help(build_parser([name]), name)
        assert stub == real, (name, stub, real)
    args = build_parser(["train"]).parse_args(["train", "--lr", "0.1"])
    assert args.lr == "0.1"  # the real train parser, with every configuration flag

"""The package's import graph: no module imports itself through others (the layers themselves are checked
by lint-imports in .ci/run, from pyproject.toml's contracts); the benchmarks import what the package has."""

import ast
import glob
import importlib
import importlib.util
import os
import sys

import grimp


def _cycles(graph) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan)."""
    index, low, stack, on_stack, groups = {}, {}, [], set(), []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in graph.find_modules_directly_imported_by(module):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            group = []
            while not group or group[-1] != module:
                group.append(stack.pop())
                on_stack.discard(group[-1])
            if len(group) > 1:
                groups.append(sorted(group))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return groups


def test_the_package_has_no_import_cycle():
    graph = grimp.build_graph("socialfeat")
    assert len(graph.modules) > 50
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_planted_cycle():
    graph = grimp.ImportGraph()
    for module in ("p", "p.a", "p.b", "p.c"):
        graph.add_module(module)
    graph.add_import(importer="p.a", imported="p.b")
    graph.add_import(importer="p.b", imported="p.a")
    graph.add_import(importer="p.c", imported="p.a")
    assert _cycles(graph) == [["p.a", "p.b"]]


def _library_names(path: str) -> list[tuple[str, str]]:
    """(module, name) of every `from socialfeat... import name` in a script, at any depth."""
    tree = ast.parse(open(path).read(), path)
    return [
        (node.module, alias.name)
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("socialfeat")
        for alias in node.names
    ]


def _importable(module: str, name: str) -> bool:
    """Whether `from module import name` works: a name the module defines, or a submodule."""
    if hasattr(importlib.import_module(module), name):
        return True
    return importlib.util.find_spec(f"{module}.{name}") is not None


def test_every_benchmark_imports_names_the_library_has():
    # the benchmarks are not run by the suite; a moved or renamed function must not leave them broken
    scripts = sorted(glob.glob(os.path.join(os.path.dirname(__file__), "..", "benchmarks", "*.py")))
    missing = [
        f"{os.path.basename(script)}: {module}.{name}"
        for script in scripts
        for module, name in _library_names(script)
        if not _importable(module, name)
    ]
    assert len(scripts) > 10 and not missing

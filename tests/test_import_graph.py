"""The repository's library modules import each other without a cycle.

Every module of the packages and the top-level modules is parsed with ``ast``; every ``import`` and
``from ... import`` in it (at module level or inside a function) that names a module of the repository
is an edge. A cycle is a strongly connected component of more than one module, or a module importing itself.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, List, Set

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def library_modules(root: Path) -> Dict[str, Path]:
    """Dotted name -> file of the top-level modules and of every module under a package folder (one with
    an ``__init__.py``) of ``root``."""
    modules = {p.stem: p for p in root.glob("*.py") if p.stem != "conftest"}
    for init in root.glob("*/__init__.py"):
        for path in init.parent.rglob("*.py"):
            parts = path.relative_to(root).with_suffix("").parts
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def _resolve(name: str, modules: Dict[str, Path]) -> List[str]:
    """The repository module ``name`` or, for ``package.attribute``, its longest prefix that is one."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return [candidate]
    return []


def imports_of(module: str, path: Path, modules: Dict[str, Path]) -> Set[str]:
    """Repository modules that ``module`` imports anywhere in its source."""
    is_package = path.name == "__init__.py"
    found: Set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.update(_resolve(alias.name, modules))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")[: len(module.split(".")) - node.level + (1 if is_package else 0)]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                found.update(_resolve(f"{base}.{alias.name}" if base else alias.name, modules))
    return found


def cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """Strongly connected components of more than one node, and self-loops (Tarjan's algorithm)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    found: List[List[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in graph.get(node, ()):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph.get(node, ()):
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def import_graph(root: Path) -> Dict[str, Set[str]]:
    modules = library_modules(root)
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def test_the_library_has_no_import_cycle():
    graph = import_graph(REPO_ROOT)
    assert {"sampler", "models.guidance", "DiffBIR.zero_shot"} <= set(graph)
    assert "models.guidance" in graph["sampler"]
    assert cycles(graph) == []


@pytest.mark.parametrize(
    "edges,expected",
    [
        ({"a": {"b"}, "b": {"c"}, "c": set()}, []),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, [["a", "b", "c"]]),
        ({"a": {"a"}}, [["a"]]),
        ({"a": {"b"}, "b": {"a"}, "c": {"d"}, "d": {"c", "e"}, "e": set()}, [["a", "b"], ["c", "d"]]),
    ],
)
def test_cycle_finder_on_known_graphs(edges, expected):
    assert sorted(cycles(edges)) == expected


def test_function_level_and_relative_imports_are_edges(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from pkg.b import g\n    return g\n")
    (pkg / "b.py").write_text("from . import a\nimport os\n\ndef g():\n    return a\n")
    (tmp_path / "top.py").write_text("import pkg.a as alias\n")
    graph = import_graph(tmp_path)
    assert graph == {"top": {"pkg.a"}, "pkg": set(), "pkg.a": {"pkg.b"}, "pkg.b": {"pkg.a"}}
    assert cycles(graph) == [["pkg.a", "pkg.b"]]

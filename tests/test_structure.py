"""The package's shape: no import cycle (between modules, or between subpackages and modules), small modules.

The import graph is read from the source with `ast`, imports inside functions included: a lazy import that
closes a loop is still a loop, only hidden until the first call.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parent.parent / "recurgen"
MAX_LINES = 500


def _modules() -> dict[str, tuple[Path, bool]]:
    """Dotted name -> (file, is a package's __init__)."""
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_pkg else parts)] = (path, is_pkg)
    return out


def _graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports (`from a import b` names a.b when b is a module)."""
    mods = _modules()
    graph: dict[str, set[str]] = {}
    for mod, (path, is_pkg) in mods.items():
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    name = alias.name
                    while name not in mods and "." in name:
                        name = name.rsplit(".", 1)[0]
                    if name in mods:
                        edges.add(name)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = mod.split(".") if is_pkg else mod.split(".")[:-1]
                    base = base[: len(base) - node.level + 1]
                    target = ".".join([*base, *([node.module] if node.module else [])])
                else:
                    target = node.module or ""
                if target not in mods:
                    continue
                for alias in node.names:
                    edges.add(f"{target}.{alias.name}" if f"{target}.{alias.name}" in mods else target)
        edges.discard(mod)
        graph[mod] = edges
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of `graph` as a path [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def visit(v: str) -> list[str] | None:
        state[v] = 1
        stack.append(v)
        for w in sorted(graph.get(v, ())):
            if state.get(w) == 1:
                return [*stack[stack.index(w):], w]
            if w not in state and (found := visit(w)) is not None:
                return found
        stack.pop()
        state[v] = 2
        return None

    for v in sorted(graph):
        if v not in state and (found := visit(v)) is not None:
            return found
    return None


def _collapsed(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The same graph with every subpackage (`recurgen.testing.*`) as one node: layers may not call back up."""
    def node(m: str) -> str:
        return ".".join(m.split(".")[:2])

    out: dict[str, set[str]] = {}
    for m, edges in graph.items():
        out.setdefault(node(m), set()).update(node(e) for e in edges if node(e) != node(m))
    return out


def test_the_graph_sees_lazy_and_relative_imports() -> None:
    graph = _graph()
    assert "recurgen.codegen.render" in graph["recurgen.pipeline"]  # imported inside a function
    assert "recurgen.ir" in graph["recurgen.pipeline"]  # `from . import ir`
    assert "recurgen.analysis.result" in graph["recurgen.codegen.render"]  # `from ..analysis.result import X`
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _collapsed({"recurgen.x.a": {"recurgen.y"}, "recurgen.y": {"recurgen.x.b"}}) == {
        "recurgen.x": {"recurgen.y"}, "recurgen.y": {"recurgen.x"}}


def test_no_import_cycle_between_modules() -> None:
    cycle = _cycle(_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or ())


def test_no_import_cycle_between_subpackages() -> None:
    cycle = _cycle(_collapsed(_graph()))
    assert cycle is None, "subpackages import each other: " + " -> ".join(cycle or ())


@pytest.mark.parametrize("path", sorted(str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")))
def test_module_is_small(path: str) -> None:
    lines = (PACKAGE / path).read_text(encoding="utf-8").count("\n")
    assert lines <= MAX_LINES, f"recurgen/{path} has {lines} lines (at most {MAX_LINES}): split it along its seams"

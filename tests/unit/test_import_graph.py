"""The planes' import graph, built from the code's own imports, follows architecture.md.

The order of the planes is read from the `planes` block of docs/design/architecture.md
(highest first; planes on one line are siblings). A module may import only planes on a
lower line: never one above it, never a sibling, so there is no cycle between planes.
"""

from __future__ import annotations

import ast
import gc
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "shoal"
DOC = ROOT / "docs" / "design" / "architecture.md"


def plane_levels() -> dict[str, int]:
    text = DOC.read_text()
    match = re.search(r"```planes\n(.*?)```", text, re.S)
    assert match, "architecture.md has no ```planes block"
    lines = [line.split("#")[0].split() for line in match.group(1).splitlines()]
    lines = [line for line in lines if line]
    return {name: len(lines) - i for i, line in enumerate(lines) for name in line}


def _plane_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "shoal" and len(parts) > 1 else None


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _parse(path: Path) -> ast.Module:
    """`ast.parse` with the collector off: CPython 3.11.7 raises "AST constructor recursion
    depth mismatch" when a collection (finalizers of earlier tests' objects) runs in the
    middle of building the tree (seen in the full suite, never alone)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        return ast.parse(path.read_text(), str(path))
    finally:
        if enabled:
            gc.enable()


def _imports(path: Path) -> set[str]:
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(_parse(path)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                found.add(".".join([*base, node.module] if node.module else base))
            elif node.module:
                found.add(node.module)
    return found


def plane_graph() -> dict[str, dict[str, list[str]]]:
    """plane -> imported plane -> the modules that import it."""
    graph: dict[str, dict[str, list[str]]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        source = _plane_of(_module_name(path))
        if source is None:  # shoal/__init__.py: the version string only
            continue
        for target in map(_plane_of, _imports(path)):
            if target is not None and target != source:
                graph.setdefault(source, {}).setdefault(target, []).append(str(path))
    return graph


def _cycles(graph: dict[str, dict[str, list[str]]]) -> list[list[str]]:
    found: list[list[str]] = []

    def walk(node: str, trail: list[str]) -> None:
        for nxt in graph.get(node, {}):
            if nxt == trail[0]:
                found.append([*trail, nxt])
            elif nxt not in trail and nxt > trail[0]:
                walk(nxt, [*trail, nxt])

    for start in graph:
        walk(start, [start])
    return found


def test_every_plane_is_placed_in_the_order() -> None:
    levels = plane_levels()
    planes = {_plane_of(_module_name(p)) for p in PACKAGE.rglob("*.py")}
    missing = sorted(p for p in planes if p is not None and p not in levels)
    assert not missing, f"planes missing from architecture.md's order: {missing}"


def test_no_cycle_between_planes() -> None:
    assert _cycles(plane_graph()) == []


def test_no_plane_imports_a_higher_plane_or_a_sibling() -> None:
    levels = plane_levels()
    wrong = [
        f"{source} -> {target} ({', '.join(modules)})"
        for source, targets in plane_graph().items()
        for target, modules in targets.items()
        if levels.get(target, 0) >= levels.get(source, 0)
    ]
    assert wrong == []


def test_the_checks_see_a_cycle_and_an_upward_import() -> None:
    graph = {"agent": {"manager": ["a.py"]}, "manager": {"agent": ["m.py"]}}
    assert _cycles(graph) == [["agent", "manager", "agent"]]
    levels = plane_levels()
    assert levels["httpapi"] > levels["node"] > levels["manager"] > levels["api"]
    assert levels["agent"] == levels["manager"]


def test_no_test_tooling_or_private_aiohttp_in_shipped_code() -> None:
    banned = re.compile(r"^(unittest|aiohttp\.test_utils|pytest)(\.|$)")
    private = re.compile(r"\b(app|web|request|runner|streams)\._[a-z]\w*")
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        offenders += [f"{path}: import {m}" for m in _imports(path) if banned.match(m)]
        offenders += [f"{path}: {m.group(0)}" for m in private.finditer(path.read_text())]
    assert offenders == []

"""The pure cores of the service networks do no I/O and read no clock or randomness:
subnet/address arithmetic, DNS names -> answers, the data plane's plan, the container's
resolv.conf text."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.unit.raft.test_purity import FORBIDDEN_CALLS, FORBIDDEN_MODULES

ROOT = Path(__file__).resolve().parents[2] / "shoal"
SOURCES = [
    ROOT / "manager" / "allocator" / "netipam.py",
    ROOT / "agent" / "dns" / "names.py",
    ROOT / "agent" / "svcnet" / "plan.py",
    ROOT / "agent" / "oci" / "netfiles.py",
]


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_service_network_cores_are_pure(path: Path) -> None:
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            module = getattr(node, "module", None) or ""
            roots = {module.split(".")[0]} | {a.name.split(".")[0] for a in node.names}
            assert not roots & FORBIDDEN_MODULES, f"{path.name}:{node.lineno} imports {roots}"
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            assert node.func.id not in FORBIDDEN_CALLS, f"{path.name}:{node.lineno}"

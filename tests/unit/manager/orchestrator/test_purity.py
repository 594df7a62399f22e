"""The rollout decisions (update.py) and the restart policy are pure: the orchestrator
passes `now` in; no clock, I/O or randomness, no store ids or timestamps made there."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import shoal.manager.orchestrator
from tests.unit.raft.test_purity import FORBIDDEN_CALLS, FORBIDDEN_MODULES

SOURCES = [
    Path(shoal.manager.orchestrator.__file__).parent / n for n in ("update.py", "restart.py")
]
MINTING = {"new_id", "now_rfc3339", "new_task"}


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_update_decisions_are_pure(path: Path) -> None:
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names]
            module = getattr(node, "module", None) or ""
            roots = {module.split(".")[0]} | {n.split(".")[0] for n in names}
            assert not roots & FORBIDDEN_MODULES, f"{path.name}:{node.lineno} imports {roots}"
            assert not set(names) & MINTING, f"{path.name}:{node.lineno} imports {names}"
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            assert node.func.id not in FORBIDDEN_CALLS | MINTING, (
                f"{path.name}:{node.lineno} calls {node.func.id}()"
            )

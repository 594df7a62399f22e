"""The gossip core is pure: no I/O, clocks, threads or hidden randomness.

Checked on the source (imports and calls), like the Raft core's, so a violation is caught
even on a code path no test executes. The driver (node.py), the keyring (random nonces),
the rate-limited log and the asyncio table wrapper are the impure rim."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import shoal.gossip
from tests.unit.raft.test_purity import FORBIDDEN_CALLS, FORBIDDEN_MODULES

GOSSIP_DIR = Path(shoal.gossip.__file__).parent
PURE = [
    "broadcast.py",
    "codec.py",
    "config.py",
    "core.py",
    "endpoints.py",
    "errors.py",
    "members.py",
    "messages.py",
    "outputs.py",
    "probe.py",
    "simnet.py",
    "suspicion.py",
]
SOURCES = [GOSSIP_DIR / name for name in PURE]


def test_every_module_is_classified() -> None:
    impure = {"__init__.py", "crypto.py", "node.py", "ratelimit.py", "table.py", "ports.py"}
    assert {p.name for p in GOSSIP_DIR.glob("*.py")} <= set(PURE) | impure


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_imports_nothing_impure(path: Path) -> None:
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots = {alias.name.split(".")[0] for alias in node.names}
            mods = {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            roots = {(node.module or "").split(".")[0]}
            mods = {node.module or ""}
        else:
            continue
        bad = roots & FORBIDDEN_MODULES
        assert not bad, f"{path.name}:{node.lineno} imports {sorted(bad)}"
        impure = {m for m in mods if m in ("shoal.gossip.node", "shoal.gossip.crypto",
                                            "shoal.gossip.table", "shoal.gossip.ratelimit")}
        assert not impure, f"{path.name}:{node.lineno} imports the impure rim {impure}"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_calls_nothing_impure(path: Path) -> None:
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        if isinstance(f, ast.Name):
            assert f.id not in FORBIDDEN_CALLS, f"{path.name}:{node.lineno} calls {f.id}()"
        elif isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name):
            assert f.value.id not in FORBIDDEN_MODULES, (
                f"{path.name}:{node.lineno} calls {f.value.id}.{f.attr}()"
            )


def test_same_seed_same_run() -> None:
    """Randomness is injected: two simulations with one seed produce the same events."""
    from random import Random

    from shoal.gossip.core import Swim
    from shoal.gossip.simnet import SimNetwork

    def run(seed: int) -> list[tuple[int, str, str, str]]:
        net = SimNetwork(Random(seed), loss=0.1, delay=(0, 2))
        cores = [Swim(f"n{i}", f"10.0.0.{i}:7946", Random(seed + i)) for i in range(6)]
        for c in cores:
            net.add(c)
        for c in cores[1:]:
            c.join([cores[0].addr])
        net.run(100)
        net.crash(cores[2].addr)
        net.run(300)
        return [(t, o, e.node_id, e.status.value) for t, o, e in net.events]

    assert run(3) == run(3)
    assert run(3) != run(4)

"""The Raft core is pure: no I/O, clocks, threads, processes or hidden randomness.

Checked on the source (imports and calls), so a violation is caught even on a code path
no test executes."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import shoal.raft

RAFT_DIR = Path(shoal.raft.__file__).parent
FORBIDDEN_MODULES = {
    "asyncio",
    "socket",
    "time",
    "os",
    "threading",
    "subprocess",
    "random",
    "selectors",
    "signal",
    "multiprocessing",
    "concurrent",
    "io",
    "pathlib",
    "datetime",
    "secrets",
    "uuid",
    "logging",
    "sys",
}
FORBIDDEN_CALLS = {"open", "print", "input", "exec", "eval", "__import__", "breakpoint"}
SOURCES = sorted(RAFT_DIR.glob("*.py"))


def test_the_package_has_sources() -> None:
    names = {p.name for p in SOURCES}
    assert {"core.py", "node.py", "log.py", "storage.py", "messages.py"} <= names


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_imports_nothing_impure(path: Path) -> None:
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots = {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            roots = {(node.module or "").split(".")[0]}
        else:
            continue
        bad = roots & FORBIDDEN_MODULES
        assert not bad, f"{path.name}:{node.lineno} imports {sorted(bad)}"


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
            # e.g. random.random(), time.monotonic(): module-level sources of effects.
            assert f.value.id not in FORBIDDEN_MODULES, (
                f"{path.name}:{node.lineno} calls {f.value.id}.{f.attr}()"
            )


def test_randomness_is_injected() -> None:
    """The only randomness is Config.rng: equal seeds give equal election timeouts, and
    different seeds spread them over [election_tick, 2 * election_tick)."""
    import random

    from shoal.raft import Config, MemoryStorage, RawNode

    def ticks_to_campaign(seed: int) -> int:
        node = RawNode(Config(id=1, rng=random.Random(seed)), MemoryStorage.bootstrap((1, 2, 3)))
        for ticks in range(1, 100):
            node.tick()
            if node.has_ready():
                rd = node.ready()
                node.advance(rd)
                if rd.messages:
                    return ticks
        raise AssertionError("never campaigned")

    first = [ticks_to_campaign(seed) for seed in range(20)]
    assert first == [ticks_to_campaign(seed) for seed in range(20)]
    assert all(10 <= t < 20 for t in first)
    assert len(set(first)) > 3

"""Fixtures of the CLI tests: a fake daemon, a fake clock, and `shoal` bound to both."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .fakes import FakeClock, FakeDaemon, Shoal, serve


@pytest.fixture
def daemon() -> FakeDaemon:
    return FakeDaemon(
        info={"Swarm": {"NodeID": "node1id", "LocalNodeState": "active", "ControlAvailable": True}},
        swarm={"ID": "cluster1", "Version": {"Index": 7}, "Spec": {"Name": "default"},
               "JoinTokens": {"Worker": "SWMTKN-1-w", "Manager": "SWMTKN-1-m"}},
    )  # fmt: skip


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def shoal(daemon: FakeDaemon, clock: FakeClock) -> Iterator[Shoal]:
    with serve(daemon) as host:
        yield Shoal(daemon, clock, host)

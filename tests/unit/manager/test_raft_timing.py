"""The driver's settings from SwarmSpec.Raft: the spec's tick wins over the daemon's
default, and only the live fields are taken over a running config."""

from __future__ import annotations

from dataclasses import replace

from shoal.api.types import RaftConfig, Swarm, SwarmSpec
from shoal.manager.raft import RaftNodeConfig
from shoal.manager.raft_open import config_for
from shoal.manager.raft_timing import wanted_config
from shoal.manager.state.store import Store

MS = 1_000_000


def _store(raft: RaftConfig) -> Store:
    store = Store()
    store.load({"cluster": [Swarm(id="c", spec=SwarmSpec(raft=raft))]}, 1)
    return store


def test_the_spec_tick_wins_over_the_daemon_default() -> None:
    assert config_for(_store(RaftConfig(tick_interval=250 * MS)), 0.02).tick_interval == 0.25
    assert config_for(_store(RaftConfig()), 0.02).tick_interval == 0.02  # older swarms


def test_wanted_config_takes_only_the_live_fields() -> None:
    current = RaftNodeConfig(tick_interval=0.1, max_inflight=8, request_timeout=3.0)
    store = _store(RaftConfig(
        tick_interval=50 * MS, election_tick=30, heartbeat_tick=3, snapshot_interval=99,
        log_entries_for_slow_followers=7,
    ))  # fmt: skip
    assert wanted_config(store, current, 0.1) == replace(
        current, tick_interval=0.05, election_tick=30, heartbeat_tick=3, snapshot_every=99,
        keep_tail=7,
    )  # fmt: skip

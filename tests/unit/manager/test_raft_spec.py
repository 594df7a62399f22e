"""SwarmSpec.Raft at swarm init / update: defaults, the shoal TickInterval, refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from shoal.api.codec import decode_body
from shoal.api.types import RaftConfig, Swarm, SwarmSpec
from shoal.ca.root import RootCA
from shoal.errors import InvalidArgument
from shoal.manager.controlapi.raft_spec import raft_defaults, validate_raft
from shoal.manager.controlapi.swarm import InitOptions, init_swarm, update_swarm
from shoal.manager.state.store import Store
from tests.unit.manager.stores import local_store

MS = 1_000_000


@pytest.fixture(scope="module")
def ca() -> RootCA:
    return RootCA.generate("swarm")



async def _swarm(tmp_path: Path, ca: RootCA, spec: SwarmSpec | None = None) -> Store:
    store = local_store(tmp_path)
    await _init(store, ca, spec)
    return store


async def _init(store: Store, ca: RootCA, spec: SwarmSpec | None) -> None:
    opts = InitOptions(
        advertise_addr="127.0.0.1", hostname="h1", default_addr_pool=["198.19.0.0/16"],
        subnet_size=24, data_path_port=0, spec=spec, engine_version="0", raft_tick=20 * MS,
    )  # fmt: skip
    await init_swarm(store, opts, ca)


def _cluster(store: Store) -> Swarm:
    return store.view().list("cluster")[0]  # type: ignore[no-any-return]


def _raft(store: Store) -> RaftConfig:
    raft = _cluster(store).spec.raft
    assert raft is not None
    return raft


def test_defaults_fill_zeroes() -> None:
    raft = raft_defaults(RaftConfig(), 100 * MS)
    assert raft == RaftConfig(
        snapshot_interval=10_000, keep_old_snapshots=0, log_entries_for_slow_followers=500,
        election_tick=10, heartbeat_tick=1, tick_interval=100 * MS,
    )  # fmt: skip
    validate_raft(raft)


def test_tick_interval_is_a_shoal_field_in_the_api() -> None:
    spec = decode_body(b'{"Raft":{"TickInterval":50000000,"ElectionTick":3}}', SwarmSpec)
    assert spec.raft == RaftConfig(tick_interval=50 * MS, election_tick=3)


@pytest.mark.parametrize(
    ("raft", "message"),
    [
        (RaftConfig(tick_interval=9 * MS), "TickInterval must be between 10ms and 10s, not 9ms"),
        (RaftConfig(tick_interval=11_000 * MS), "not 11000ms"),
        (RaftConfig(tick_interval=-1), "TickInterval"),
        (RaftConfig(heartbeat_tick=-1), "HeartbeatTick must be at least 1"),
        (RaftConfig(election_tick=3, heartbeat_tick=2), r"ElectionTick \(3\) must be at least "
                                                        r"twice HeartbeatTick \(2\)"),
        (RaftConfig(heartbeat_tick=6), r"ElectionTick \(10\)"),  # against the default
        (RaftConfig(election_tick=-5), "ElectionTick"),
        (RaftConfig(snapshot_interval=-1), "SnapshotInterval must be at least 1"),
        (RaftConfig(keep_old_snapshots=-1), "KeepOldSnapshots"),
        (RaftConfig(log_entries_for_slow_followers=-1), "LogEntriesForSlowFollowers"),
    ],
)  # fmt: skip
def test_bad_raft_specs_are_refused(raft: RaftConfig, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        validate_raft(raft_defaults(raft, 100 * MS))


@pytest.mark.parametrize(
    "raft",
    [
        RaftConfig(election_tick=3, heartbeat_tick=1),  # the API reference's example
        RaftConfig(election_tick=2, heartbeat_tick=1, tick_interval=10 * MS),
        RaftConfig(election_tick=20, heartbeat_tick=10, tick_interval=10_000 * MS),
    ],
)
def test_edges_are_accepted(raft: RaftConfig) -> None:
    validate_raft(raft_defaults(raft, 100 * MS))


async def test_init_stores_the_founding_tick_and_docker_defaults(
    tmp_path: Path, ca: RootCA
) -> None:
    store = await _swarm(tmp_path, ca)
    assert _raft(store) == raft_defaults(RaftConfig(), 20 * MS)


async def test_init_with_a_bad_raft_spec_writes_nothing(tmp_path: Path, ca: RootCA) -> None:
    store = local_store(tmp_path)
    spec = SwarmSpec(raft=RaftConfig(election_tick=3, heartbeat_tick=2))
    with pytest.raises(InvalidArgument, match="twice"):
        await _init(store, ca, spec)
    assert store.view().list("cluster") == [] and store.index == 0


async def test_update_changes_timing_and_refuses_bad_values(tmp_path: Path, ca: RootCA) -> None:
    store = await _swarm(tmp_path, ca)
    version = _cluster(store).version.index
    new = SwarmSpec(raft=RaftConfig(election_tick=20, heartbeat_tick=2, tick_interval=50 * MS))
    await update_swarm(store, version, new)
    raft = _raft(store)
    assert (raft.election_tick, raft.heartbeat_tick, raft.tick_interval) == (20, 2, 50 * MS)

    before = _cluster(store)
    for bad in (RaftConfig(tick_interval=5 * MS), RaftConfig(election_tick=3, heartbeat_tick=2)):
        with pytest.raises(InvalidArgument):
            await update_swarm(store, before.version.index, SwarmSpec(raft=bad))
        assert _cluster(store) == before  # nothing changed, not even the version


async def test_update_without_a_tick_keeps_the_current_one(tmp_path: Path, ca: RootCA) -> None:
    """The real docker CLI reads the spec and posts it back without shoal's field."""
    store = await _swarm(tmp_path, ca)
    spec = SwarmSpec(raft=RaftConfig(tick_interval=250 * MS))
    await update_swarm(store, _cluster(store).version.index, spec)
    docker_like = SwarmSpec(raft=RaftConfig(snapshot_interval=77, election_tick=10))
    await update_swarm(store, _cluster(store).version.index, docker_like)
    raft = _raft(store)
    assert (raft.tick_interval, raft.snapshot_interval) == (250 * MS, 77)

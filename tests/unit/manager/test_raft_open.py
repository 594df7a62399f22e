"""Opening a manager's Raft storage: LocalLog migration, restart, force-new-cluster."""

from __future__ import annotations

from pathlib import Path

from shoal.api.types import Secret, SecretSpec
from shoal.manager.raft.ids import raft_id
from shoal.manager.raft.snapshot import encode_store
from shoal.manager.raft.storage import SQLiteStorage
from shoal.manager.raft_open import force_new_cluster, open_storage, replay
from shoal.manager.state.changes import Batch, Change, encode_batch
from shoal.manager.state.locallog import LocalLog
from shoal.manager.state.store import Store, Tx
from shoal.raft import ConfState, Entry, HardState


def _secret(name: str) -> Secret:
    return Secret(id=f"id-{name}", spec=SecretSpec(name=name))


async def test_a_local_log_data_root_is_migrated_into_the_first_snapshot(tmp_path: Path) -> None:
    swarm = tmp_path / "swarm"
    swarm.mkdir()
    old = Store()
    local = LocalLog(swarm / "state.db", old)
    old.attach(local)

    def fn(tx: Tx) -> None:
        tx.create("secret", _secret("a"))
        tx.create("secret", _secret("b"))

    await old.update(fn)
    local.close()

    storage = open_storage(swarm, "node1", founding=False)
    store = Store()
    replay(storage, store)
    storage.close()
    assert sorted(s.spec.name for s in store.view().list("secret")) == ["a", "b"]
    assert store.index == old.index
    assert not (swarm / "state.db").exists() and (swarm / "state.db.migrated").exists()
    # reopening uses raft.db as it is (no second migration, same state)
    again = open_storage(swarm, "node1", founding=False)
    assert again.snapshot().metadata.conf_state.voters == (raft_id("node1"),)
    again.close()


def test_a_joining_manager_starts_empty_a_founder_bootstraps(tmp_path: Path) -> None:
    joining = open_storage(tmp_path / "j", "n2", founding=False)
    assert joining.is_empty
    joining.close()
    founder = open_storage(tmp_path / "f", "n1", founding=True)
    assert founder.snapshot().metadata.conf_state.voters == (raft_id("n1"),)
    founder.close()


def test_force_new_cluster_keeps_every_committed_write_and_only_this_voter(
    tmp_path: Path,
) -> None:
    swarm = tmp_path / "swarm"
    swarm.mkdir()
    me, a, b = raft_id("me"), raft_id("a"), raft_id("b")
    storage = SQLiteStorage.open(swarm / "raft.db")
    storage.bootstrap((me, a, b), data=encode_store(Store()))
    batches = [
        encode_batch(Batch("t", [Change("create", "secret", f"id-{n}",
                                        _encode(_secret(n)))]))
        for n in ("x", "y", "z")
    ]
    entries = [Entry(term=2, index=2 + i, data=raw) for i, raw in enumerate(batches)]
    storage.save(entries=entries, hard_state=HardState(term=3, vote=a, commit=3))
    storage.close()  # entry 4 ("z") is not committed: it must not survive

    force_new_cluster(swarm, "me")

    fresh = SQLiteStorage.open(swarm / "raft.db")
    snap = fresh.snapshot()
    assert snap.metadata.conf_state == ConfState((me,))
    assert snap.index == 3 and snap.metadata.term == 4 and fresh.hard_state.term == 4
    store = Store()
    replay(fresh, store)
    fresh.close()
    assert sorted(s.spec.name for s in store.view().list("secret")) == ["x", "y"]
    assert (swarm / "raft.db.old").exists()


def _encode(obj: object) -> bytes:
    import msgspec

    return msgspec.msgpack.encode(obj)


async def test_the_swarm_spec_raft_settings_drive_the_driver(tmp_path: Path) -> None:
    from shoal.api.types import RaftConfig, Swarm, SwarmSpec
    from shoal.manager.raft_open import config_for

    store = Store()
    assert config_for(store, 0.05).tick_interval == 0.05  # no cluster yet: defaults
    raft = RaftConfig(election_tick=20, heartbeat_tick=2, snapshot_interval=100,
                      log_entries_for_slow_followers=50)
    store.load({"cluster": [Swarm(id="c", spec=SwarmSpec(raft=raft))]}, 1)
    config = config_for(store, 0.1)
    assert (config.election_tick, config.heartbeat_tick) == (20, 2)
    assert (config.snapshot_every, config.keep_tail) == (100, 50)
    store.load({"cluster": [Swarm(id="c", spec=SwarmSpec(raft=RaftConfig(
        election_tick=1, heartbeat_tick=1)))]}, 2)
    assert config_for(store, 0.1).election_tick == 10  # nonsense falls back to the defaults

"""SwarmSpec.Raft: defaults and validation (pure; no I/O).

Zero means "the default" for every field, as in Docker's API (the docker CLI sends zero
sections). `TickInterval` (nanoseconds) is a shoal extension: on `swarm update` a zero
keeps the cluster's current tick, because a client that does not know the field (the
real docker CLI reads the spec and posts it back) drops it; a new swarm gets the
founding daemon's default (100 ms, SHOAL_RAFT_TICK_MS).

Rules, each refused with a message naming the field and nothing changed:
* 10 ms <= TickInterval <= 10 s: below, a tick is within the event loop's measured
  lateness under load (tens of ms); above, a heartbeat every tick is too rare to matter;
* HeartbeatTick >= 1 and ElectionTick >= 2 x HeartbeatTick: a follower whose election
  timer (randomised in [ElectionTick, 2 x ElectionTick)) runs out after one lost heartbeat
  disturbs a healthy leader; two heartbeats per timeout is the floor (it admits the API
  reference's example 3/1), and the default keeps ten (see docs/design/raft-driver.md);
* SnapshotInterval >= 1, KeepOldSnapshots and LogEntriesForSlowFollowers >= 0.
"""

from __future__ import annotations

from shoal.api.types import RaftConfig
from shoal.errors import InvalidArgument

__all__ = [
    "DEFAULT_ELECTION_TICK",
    "DEFAULT_HEARTBEAT_TICK",
    "DEFAULT_TICK",
    "MAX_TICK",
    "MIN_TICK",
    "raft_defaults",
    "validate_raft",
]

MS = 1_000_000
DEFAULT_TICK = 100 * MS
MIN_TICK = 10 * MS
MAX_TICK = 10_000 * MS
DEFAULT_ELECTION_TICK = 10
DEFAULT_HEARTBEAT_TICK = 1
DEFAULT_SNAPSHOT_INTERVAL = 10_000
DEFAULT_SLOW_FOLLOWER_ENTRIES = 500


def _refuse(text: str) -> InvalidArgument:
    return InvalidArgument(f"rpc error: code = InvalidArgument desc = raft: {text}")


def raft_defaults(raft: RaftConfig | None, tick: int) -> RaftConfig:
    """`raft` with every zero field set to its default; `tick` (ns) fills TickInterval."""
    raft = raft or RaftConfig()
    raft.snapshot_interval = raft.snapshot_interval or DEFAULT_SNAPSHOT_INTERVAL
    raft.keep_old_snapshots = raft.keep_old_snapshots or 0
    raft.log_entries_for_slow_followers = (
        raft.log_entries_for_slow_followers or DEFAULT_SLOW_FOLLOWER_ENTRIES
    )
    raft.election_tick = raft.election_tick or DEFAULT_ELECTION_TICK
    raft.heartbeat_tick = raft.heartbeat_tick or DEFAULT_HEARTBEAT_TICK
    raft.tick_interval = raft.tick_interval or tick
    return raft


def validate_raft(raft: RaftConfig) -> None:
    """Refuse a Raft spec (after `raft_defaults`) that the managers could not run with."""
    tick = raft.tick_interval
    if not MIN_TICK <= tick <= MAX_TICK:
        raise _refuse(f"TickInterval must be between 10ms and 10s, not {_ms(tick)}")
    election, heartbeat = raft.election_tick, raft.heartbeat_tick
    if heartbeat < 1:
        raise _refuse(f"HeartbeatTick must be at least 1, not {heartbeat}")
    if election < 2 * heartbeat:
        raise _refuse(
            f"ElectionTick ({election}) must be at least twice HeartbeatTick ({heartbeat})"
        )
    if raft.snapshot_interval < 1:
        raise _refuse(f"SnapshotInterval must be at least 1, not {raft.snapshot_interval}")
    if (raft.keep_old_snapshots or 0) < 0:
        raise _refuse(f"KeepOldSnapshots must not be negative, not {raft.keep_old_snapshots}")
    if raft.log_entries_for_slow_followers < 0:
        raise _refuse(
            "LogEntriesForSlowFollowers must not be negative, not "
            f"{raft.log_entries_for_slow_followers}"
        )


def _ms(ns: int) -> str:
    return f"{ns / MS:g}ms"

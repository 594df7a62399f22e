"""Settings of the Raft driver and the contract of the state machine it replicates.

The timing defaults (100 ms ticks, elections after 10-20 ticks, a heartbeat every tick)
were chosen by measurement on the project's noisy 2-core machines; docs/design/
raft-driver.md gives the figures and the reasoning. Swarm's are 1 s ticks, 10-tick
elections (10-20 s): ours fail over about ten times faster and still leave a wide margin
over the worst event-loop stalls and fsync latencies measured.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Protocol

from shoal.errors import InvalidArgument
from shoal.raft.messages import DEFAULT_MAX_DECODE_BYTES

__all__ = ["LIVE_FIELDS", "RaftNodeConfig", "StateMachine", "idle_heartbeat_tick"]

# What a running driver can change (`RaftNode.reconfigure`): what SwarmSpec.Raft sets.
LIVE_FIELDS = ("tick_interval", "election_tick", "heartbeat_tick", "snapshot_every", "keep_tail")


def idle_heartbeat_tick(election_tick: int, heartbeat_tick: int) -> int:
    """A third of `election_tick` if that is longer than `heartbeat_tick`, else 0 (off):
    a follower then hears at least three heartbeats of an idle leader within its shortest
    election timeout."""
    idle = election_tick // 3
    return idle if idle > heartbeat_tick else 0


class StateMachine(Protocol):
    """What the driver replicates. Every method runs on the event loop, synchronously,
    in commit order, identically on every replica (so it must be deterministic)."""

    def apply(self, index: int, data: bytes) -> None:
        """Apply one committed, non-empty entry. Raising is fatal for the node."""
        ...

    def snapshot(self) -> bytes:
        """The whole state as of the last applied entry."""
        ...

    def restore(self, data: bytes) -> None:
        """Replace the whole state by a snapshot's (`b""` is the empty initial state)."""
        ...


@dataclass(frozen=True)
class RaftNodeConfig:
    """`tick_interval` in seconds; `election_tick`/`heartbeat_tick` in ticks.

    `snapshot_every`: applied entries between two snapshots (then the log is compacted,
    keeping `keep_tail` entries for slow followers). `max_message_bytes`: larger messages
    from a peer are dropped. `max_outbound`: messages queued per peer before new ones are
    dropped (the peer is then reported unreachable). `request_timeout`: how long
    read_index, leadership transfers and membership changes wait (default: three
    election timeouts)."""

    tick_interval: float = 0.1
    election_tick: int = 10
    heartbeat_tick: int = 1
    snapshot_every: int = 10_000
    keep_tail: int = 500
    max_inflight: int = 256
    max_size_per_msg: int = 1 << 20
    max_message_bytes: int = DEFAULT_MAX_DECODE_BYTES
    max_outbound: int = 4096
    request_timeout: float | None = None

    @property
    def idle_heartbeat_tick(self) -> int:
        """Heartbeat interval of an idle leader (`shoal.raft.Config.idle_heartbeat_tick`):
        a third of the election timeout (3 ticks of the default 10), 0 (off) when that is
        not longer than the heartbeat tick. Derived, not a spec field: `docker info` still
        shows the HeartbeatTick, which is what a busy leader does. See raft-driver.md."""
        return idle_heartbeat_tick(self.election_tick, self.heartbeat_tick)

    @property
    def max_sleep_ticks(self) -> int:
        """The most ticks the driver's ticker sleeps at once before a due tick (raft-driver.md
        "Due ticks"): one more than the leader's heartbeat gap (4 for the defaults: an idle
        follower's heartbeats, every 3, arrive first and its timer does not fire), at most
        half the election timeout. A stall of the loop longer than this always meets a
        late timer and counts one tick; a shorter one may count up to this minus one."""
        gap = max(self.heartbeat_tick, self.idle_heartbeat_tick)
        return max(1, min(gap + 1, self.election_tick // 2))

    @property
    def election_timeout(self) -> float:
        return self.election_tick * self.tick_interval

    @property
    def timeout(self) -> float:
        return self.request_timeout or 3 * self.election_timeout

    def validate(self) -> None:
        if self.tick_interval <= 0:
            raise InvalidArgument("raft: tick interval must be positive")
        if self.heartbeat_tick <= 0 or self.election_tick <= self.heartbeat_tick:
            raise InvalidArgument("raft: election ticks must exceed heartbeat ticks (>= 1)")
        if self.snapshot_every <= 0 or self.keep_tail < 0:
            raise InvalidArgument("raft: snapshot interval must be positive, tail >= 0")
        if self.max_message_bytes <= 0 or self.max_outbound <= 0:
            raise InvalidArgument("raft: message and queue limits must be positive")

    def check_live_change(self, new: RaftNodeConfig) -> None:
        """Refuse `new` unless it is valid and differs from this one in LIVE_FIELDS only."""
        new.validate()
        fixed = [f.name for f in fields(self) if f.name not in LIVE_FIELDS]
        changed = [f for f in fixed if getattr(new, f) != getattr(self, f)]
        if changed:
            raise InvalidArgument(f"raft: {', '.join(changed)} cannot change while running")

    def describe(self) -> str:
        return (
            f"tick {self.tick_interval * 1e3:g} ms, election {self.election_tick} ticks, "
            f"heartbeat {self.heartbeat_tick} ticks, snapshot every {self.snapshot_every} "
            f"entries keeping {self.keep_tail}"
        )

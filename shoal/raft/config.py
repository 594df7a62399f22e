"""Configuration of one Raft node. Randomness comes in as an object (a seeded
`random.Random` in tests), never from a module-level source, so runs can be replayed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from shoal.raft.errors import ConfigError
from shoal.raft.messages import NONE

__all__ = ["Config", "RandomSource"]


class RandomSource(Protocol):
    """What Raft needs of randomness (`random.Random` provides it)."""

    def randrange(self, stop: int, /) -> int: ...


@dataclass(frozen=True)
class Config:
    """`election_tick` and `heartbeat_tick` count `tick()` calls; an election starts after
    a random timeout in [election_tick, 2*election_tick) without hearing from a leader.

    `applied` is the last index the application had applied before a restart (defaults
    to the storage's snapshot index): committed entries after it are handed out again.
    `max_size_per_msg` bounds the entries of one MsgApp (at least one entry is always
    sent); `max_inflight` is the pipeline window of MsgApps per follower.

    `idle_heartbeat_tick` (0: off): while the leader is idle — every follower has the whole
    log and knows the commit index, no read or transfer waits — it heartbeats every that
    many ticks instead of every `heartbeat_tick`; the first change makes it heartbeat at
    the normal rate again (see `leader.is_idle`). At most half of `election_tick`, so
    a follower still hears two heartbeats within its shortest election timeout.
    """

    id: int
    rng: RandomSource
    election_tick: int = 10
    heartbeat_tick: int = 1
    idle_heartbeat_tick: int = 0
    applied: int = 0
    max_size_per_msg: int = 1 << 20
    max_committed_size_per_ready: int = 16 << 20
    max_inflight: int = 256
    pre_vote: bool = True
    check_quorum: bool = True

    def validate(self) -> None:
        if self.id == NONE or self.id < 0:
            raise ConfigError("raft: node id must be a positive integer")
        if self.heartbeat_tick <= 0:
            raise ConfigError("raft: heartbeat_tick must be greater than 0")
        if self.election_tick <= self.heartbeat_tick:
            raise ConfigError("raft: election_tick must be greater than heartbeat_tick")
        idle = self.idle_heartbeat_tick
        if idle < 0 or (idle and 2 * idle > self.election_tick):
            raise ConfigError("raft: idle_heartbeat_tick must be 0 or at most election_tick/2")
        if self.max_inflight <= 0:
            raise ConfigError("raft: max_inflight must be greater than 0")
        if self.max_size_per_msg <= 0 or self.max_committed_size_per_ready <= 0:
            raise ConfigError("raft: size limits must be greater than 0")
        if self.applied < 0:
            raise ConfigError("raft: applied must not be negative")

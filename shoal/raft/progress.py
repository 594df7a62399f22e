"""The leader's view of each follower: how far it matches, what to send next, and how.

A follower is in one of three states:
  PROBE      we do not know where its log matches ours: send one MsgApp per heartbeat
             round and wait for the answer (`paused` after sending).
  REPLICATE  it follows: stream entries optimistically (`next` jumps ahead of `match`),
             at most `max_inflight` unacknowledged MsgApps (the pipeline window).
  SNAPSHOT   it needs a snapshot, which is on its way; send nothing else until it answers,
             the application reports the outcome, or it stays silent for an election timeout.
"""

from __future__ import annotations

import enum
from collections import deque

__all__ = ["Inflights", "Progress", "ProgressState"]


class ProgressState(enum.IntEnum):
    PROBE = 0
    REPLICATE = 1
    SNAPSHOT = 2


class Inflights:
    """Last indices of MsgApps sent but not acknowledged, oldest first (a sliding window)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._q: deque[int] = deque()

    def __len__(self) -> int:
        return len(self._q)

    def add(self, last_index: int) -> None:
        if self.full():
            raise OverflowError("cannot add into a full inflights window")
        self._q.append(last_index)

    def free_le(self, index: int) -> None:
        """Acknowledge every MsgApp whose last entry is <= index."""
        q = self._q
        while q and q[0] <= index:
            q.popleft()

    def full(self) -> bool:
        return len(self._q) >= self.capacity

    def reset(self) -> None:
        self._q.clear()


class Progress:
    __slots__ = (
        "inflights",
        "is_learner",
        "match",
        "next",
        "paused",
        "pending_snapshot",
        "recent_active",
        "snapshot_beats",
        "state",
    )

    def __init__(self, next_: int, max_inflight: int, *, is_learner: bool = False) -> None:
        self.match = 0
        self.next = next_
        self.state = ProgressState.PROBE
        self.paused = False  # flow control: nothing more until an answer arrives
        self.pending_snapshot = 0
        self.recent_active = True  # new members are not counted dead before first contact
        self.is_learner = is_learner
        self.inflights = Inflights(max_inflight)
        self.snapshot_beats = 0

    def __repr__(self) -> str:
        learner = " learner" if self.is_learner else ""
        return f"{self.state.name} match={self.match} next={self.next}{learner}"

    def _reset_state(self, state: ProgressState) -> None:
        self.paused = False
        self.pending_snapshot = 0
        self.snapshot_beats = 0
        self.state = state
        self.inflights.reset()

    def become_probe(self) -> None:
        # After a snapshot we optimistically probe right after it.
        if self.state is ProgressState.SNAPSHOT:
            pending = self.pending_snapshot
            self._reset_state(ProgressState.PROBE)
            self.next = max(self.match + 1, pending + 1)
        else:
            self._reset_state(ProgressState.PROBE)
            self.next = self.match + 1

    def become_replicate(self) -> None:
        self._reset_state(ProgressState.REPLICATE)
        self.next = self.match + 1

    def become_snapshot(self, snapshot_index: int) -> None:
        self._reset_state(ProgressState.SNAPSHOT)
        self.pending_snapshot = snapshot_index

    def maybe_update(self, n: int) -> bool:
        """An acknowledgement up to `n`; False if it is stale."""
        updated = False
        if self.match < n:
            self.match = n
            updated = True
            self.paused = False
        self.next = max(self.next, n + 1)
        return updated

    def maybe_decr_to(self, rejected: int, match_hint: int) -> bool:
        """A rejection of the MsgApp at index `rejected`; False if it is stale."""
        if self.state is ProgressState.REPLICATE:
            if rejected <= self.match:
                return False
            self.next = self.match + 1
            return True
        if self.next - 1 != rejected:
            return False
        self.next = max(min(rejected, match_hint + 1), self.match + 1)
        self.paused = False
        return True

    def sent_entries(self, n_entries: int, last_index: int) -> None:
        """Flow control after sending a MsgApp carrying entries up to `last_index`."""
        if self.state is ProgressState.REPLICATE:
            if n_entries:
                self.next = last_index + 1
                self.inflights.add(last_index)
            if self.inflights.full():
                self.paused = True
        elif self.state is ProgressState.PROBE:
            self.paused = True

    def is_paused(self) -> bool:
        if self.state is ProgressState.SNAPSHOT:
            return True
        return self.paused

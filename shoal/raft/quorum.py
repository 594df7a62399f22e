"""Majority quorums over one voter set (shoal changes membership one server at a time, so
there is never a joint configuration), and the tracker of the leader's per-peer progress.

Learners get Progress (they receive the log) but never count towards commit or votes.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping

from shoal.raft.messages import ConfState
from shoal.raft.progress import Progress

__all__ = ["ProgressTracker", "VoteResult", "committed_index", "vote_result"]


class VoteResult(enum.IntEnum):
    PENDING = 0
    LOST = 1
    WON = 2


def committed_index(voters: Iterable[int], match: Mapping[int, int]) -> int:
    """The largest index that a majority of `voters` have (0 for no voters)."""
    srt = sorted((match.get(v, 0) for v in voters), reverse=True)
    if not srt:
        return 0
    return srt[len(srt) // 2]


def vote_result(voters: Iterable[int], votes: Mapping[int, bool]) -> VoteResult:
    granted = rejected = total = 0
    for v in voters:
        total += 1
        got = votes.get(v)
        if got is True:
            granted += 1
        elif got is False:
            rejected += 1
    q = total // 2 + 1
    if granted >= q:
        return VoteResult.WON
    if total - rejected >= q:
        return VoteResult.PENDING
    return VoteResult.LOST


class ProgressTracker:
    """The configuration (voters, learners), a Progress per member, and election votes."""

    def __init__(self, max_inflight: int) -> None:
        self.max_inflight = max_inflight
        self.voters: frozenset[int] = frozenset()
        self.learners: frozenset[int] = frozenset()
        self.progress: dict[int, Progress] = {}
        self.votes: dict[int, bool] = {}

    def conf_state(self) -> ConfState:
        return ConfState(voters=tuple(sorted(self.voters)), learners=tuple(sorted(self.learners)))

    def set_config(self, voters: frozenset[int], learners: frozenset[int], next_: int) -> None:
        """Switch to (voters, learners): new members get a fresh Progress probing `next_`."""
        self.voters = voters
        self.learners = learners
        members = voters | learners
        for gone in [i for i in self.progress if i not in members]:
            del self.progress[gone]
        for i in members:
            pr = self.progress.get(i)
            if pr is None:
                pr = self.progress[i] = Progress(next_, self.max_inflight)
            pr.is_learner = i in learners

    def is_singleton(self) -> bool:
        return len(self.voters) == 1

    def committed(self) -> int:
        return committed_index(self.voters, {i: self.progress[i].match for i in self.voters})

    def quorum_active(self) -> bool:
        active = {i: self.progress[i].recent_active for i in self.voters}
        return vote_result(self.voters, active) is VoteResult.WON

    def record_vote(self, node: int, granted: bool) -> None:
        self.votes.setdefault(node, granted)

    def tally_votes(self) -> VoteResult:
        return vote_result(self.voters, self.votes)

    def reset_votes(self) -> None:
        self.votes = {}

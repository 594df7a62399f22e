"""Raft's safety properties, checked incrementally after every step of a simulation.

Logs are compared through chained hashes: h(i) = hash(h(i-1), term(i), data(i)), so two
logs agree on every entry up to i exactly when their h(i) agree.

- election safety: at most one leader per term;
- log matching: two logs holding an entry with the same index and term hold the same
  prefix up to it (the (index, term) -> h table must never see two hashes);
- leader completeness: a new leader's log holds the highest committed entry (and so,
  by log matching, every committed entry);
- state machine safety: no two nodes apply different entries at an index, and nothing
  is applied before it is durably committed on that node.

"Committed" is taken from hard states once they are durable (a commit index that a crash
may still erase proves nothing).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NoReturn

from shoal.raft import Entry, Snapshot

__all__ = ["BOOT_HASH", "LogHashes", "SafetyChecker", "SafetyViolation", "chain"]

BOOT_HASH = 0x5EED


class SafetyViolation(AssertionError):
    pass


def chain(prev: int, e: Entry) -> int:
    return hash((prev, e.term, e.type, e.data))


@dataclass
class LogHashes:
    """Chained hashes of one node's persisted log, index -> h."""

    h: dict[int, int] = field(default_factory=lambda: {0: 0})

    def reset_to_snapshot(self, index: int, hash_: int) -> None:
        self.h = {index: hash_}


class SafetyChecker:
    def __init__(self) -> None:
        self.leaders: dict[int, int] = {}  # term -> leader
        self.by_id: dict[tuple[int, int], int] = {(1, 1): BOOT_HASH}  # (index, term) -> h
        self.committed: dict[int, int] = {1: BOOT_HASH}  # index -> h
        self.max_committed = 1
        self.applied: dict[int, tuple[int, int, bytes]] = {}  # index -> (term, type, data)

    def fail(self, what: str) -> NoReturn:
        raise SafetyViolation(what)

    def on_leader(self, node: int, term: int, log: LogHashes) -> None:
        other = self.leaders.setdefault(term, node)
        if other != node:
            self.fail(f"election safety: {other} and {node} both leaders of term {term}")
        ci = self.max_committed
        if log.h.get(ci) != self.committed[ci]:
            held = "another entry" if ci in log.h else f"entries {min(log.h)}..{max(log.h)}"
            self.fail(
                f"leader completeness: {node} leads term {term} without committed entry "
                f"{ci} (its log holds {held})"
            )

    def on_snapshot(self, node: int, snap: Snapshot, log: LogHashes) -> None:
        h = self.by_id.get((snap.index, snap.term))
        if h is None:
            self.fail(f"{node} installed snapshot {snap.index}/{snap.term} of no known entry")
        log.reset_to_snapshot(snap.index, h)

    def on_entries(self, node: int, entries: tuple[Entry, ...], log: LogHashes) -> None:
        if not entries:
            return
        first = entries[0].index
        prev = log.h.get(first - 1)
        if prev is None:
            self.fail(f"log of {node}: entry {first} appended after a gap")
        for i in [i for i in log.h if i >= first]:
            del log.h[i]
        for e in entries:
            prev = chain(prev, e)
            log.h[e.index] = prev
            known = self.by_id.setdefault((e.index, e.term), prev)
            if known != prev:
                self.fail(
                    f"log matching: {node} has entry {e.index}/{e.term} with a prefix that "
                    "differs from another node's"
                )

    def on_durable_commit(self, node: int, commit: int, log: LogHashes) -> None:
        h = log.h.get(commit)
        if h is None:
            if commit < min(log.h):
                return  # covered by a snapshot, checked when applied
            self.fail(f"{node} committed {commit} beyond its durable log (ends {max(log.h)})")
        known = self.committed.setdefault(commit, h)
        if known != h:
            self.fail(f"state machine safety: two different entries committed at {commit}")
        if commit > self.max_committed:
            self.max_committed = commit

    def on_apply(self, node: int, e: Entry, durable_commit: int) -> None:
        if e.index > durable_commit:
            self.fail(f"{node} applied {e.index} before it was durably committed")
        got = (e.term, int(e.type), e.data)
        known = self.applied.setdefault(e.index, got)
        if known != got:
            self.fail(
                f"state machine safety: {node} applied {got} at {e.index}, another node {known}"
            )

"""Linearizability checking of key-value histories (Wing & Gong's search with Lowe's
just-in-time linearization and memoization, as in porcupine), one key at a time
(linearizability is compositional over independent objects).

An operation has an invoke time and a complete time; `complete=None` means the client
never learnt the outcome (a timed-out put): it may have taken effect at any point after
its invocation, or never — which, for a write nobody observes afterwards, is the same as
taking effect at the very end, so it is given a return at infinity.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = ["Op", "brute_force_linearizable", "check_history", "linearizable"]

INF = float("inf")


@dataclass(frozen=True)
class Op:
    """`value` is the value written by a put, or the value read by a get (None: absent)."""

    client: int
    kind: str  # "put" | "get"
    key: str
    value: int | None
    invoke: float
    complete: float | None

    @property
    def end(self) -> float:
        return INF if self.complete is None else self.complete


def _step(state: int | None, op: Op) -> tuple[bool, int | None]:
    if op.kind == "put":
        return True, op.value
    return op.value == state, state


class _Node:
    __slots__ = ("is_call", "match", "next", "op_id", "prev")

    def __init__(self, op_id: int, is_call: bool) -> None:
        self.op_id = op_id
        self.is_call = is_call
        self.match: _Node | None = None
        self.prev: _Node | None = None
        self.next: _Node | None = None


def linearizable(ops: Sequence[Op]) -> bool:
    """Is this single-key history linearizable (initial value: absent)?"""
    ops = [o for o in ops if not (o.kind == "get" and o.complete is None)]
    if not ops:
        return True
    # Calls sort before returns at equal times: such operations count as concurrent.
    events = sorted(
        [(o.invoke, 0, i) for i, o in enumerate(ops)] + [(o.end, 1, i) for i, o in enumerate(ops)]
    )
    head = _Node(-1, False)
    prev = head
    calls: dict[int, _Node] = {}
    for _, is_ret, i in events:
        node = _Node(i, not is_ret)
        if is_ret:
            node.match = calls[i]
            calls[i].match = node
        else:
            calls[i] = node
        node.prev, prev.next = prev, node
        prev = node

    state: int | None = None
    linearized = 0
    cache: set[tuple[int, int | None]] = set()
    stack: list[tuple[_Node, int | None]] = []
    entry = head.next
    while head.next is not None:
        assert entry is not None
        if entry.is_call:
            ok, new_state = _step(state, ops[entry.op_id])
            if ok:
                new_lin = linearized | (1 << entry.op_id)
                if (new_lin, new_state) not in cache:
                    cache.add((new_lin, new_state))
                    stack.append((entry, state))
                    state, linearized = new_state, new_lin
                    _lift(entry)
                    entry = head.next
                    continue
            entry = entry.next
        else:
            if not stack:
                return False
            entry, state = stack.pop()
            linearized &= ~(1 << entry.op_id)
            _unlift(entry)
            entry = entry.next
    return True


def _lift(call: _Node) -> None:
    ret = call.match
    assert call.prev is not None and call.next is not None and ret is not None
    assert ret.prev is not None
    call.prev.next = call.next
    call.next.prev = call.prev
    ret.prev.next = ret.next
    if ret.next is not None:
        ret.next.prev = ret.prev


def _unlift(call: _Node) -> None:
    ret = call.match
    assert call.prev is not None and call.next is not None and ret is not None
    assert ret.prev is not None
    ret.prev.next = ret
    if ret.next is not None:
        ret.next.prev = ret
    call.prev.next = call
    call.next.prev = call


def check_history(ops: Iterable[Op]) -> tuple[bool, str]:
    """Check every key; (False, explanation) for the first key that is not linearizable."""
    by_key: dict[str, list[Op]] = defaultdict(list)
    for o in ops:
        by_key[o.key].append(o)
    for key in sorted(by_key):
        if not linearizable(by_key[key]):
            lines = [
                f"  c{o.client} {o.kind}({o.value}) [{o.invoke}, {o.complete}]"
                for o in sorted(by_key[key], key=lambda o: o.invoke)
            ]
            return False, f"key {key!r} is not linearizable:\n" + "\n".join(lines)
    return True, ""


def brute_force_linearizable(ops: Sequence[Op]) -> bool:
    """The definition, by enumeration (tiny histories only): some subset of the
    indeterminate puts plus all completed operations, in an order that respects
    real time, replays correctly on a register."""
    done = [o for o in ops if o.complete is not None]
    maybe = [o for o in ops if o.complete is None and o.kind == "put"]
    for k in range(len(maybe) + 1):
        for extra in itertools.combinations(maybe, k):
            chosen = done + list(extra)
            for perm in itertools.permutations(chosen):
                if _respects_real_time(perm) and _replays(perm):
                    return True
    return False


def _respects_real_time(order: Sequence[Op]) -> bool:
    for i, a in enumerate(order):
        for b in order[i + 1 :]:
            if b.end < a.invoke:
                return False
    return True


def _replays(order: Sequence[Op]) -> bool:
    state: int | None = None
    for o in order:
        ok, state = _step(state, o)
        if not ok:
            return False
    return True

"""Client operations as seen by the clients: invocations and completions, on one clock."""

from __future__ import annotations

from dataclasses import dataclass

from tests.sim.linearizability import Op

__all__ = ["History", "PendingOp"]


@dataclass
class PendingOp:
    id: int
    client: int
    kind: str
    key: str
    value: int | None
    invoke: int
    deadline: int
    complete: int | None = None
    result: int | None = None
    outcome: str = "pending"  # pending | ok | failed | timeout


class History:
    def __init__(self) -> None:
        self.clock = 0  # a counter: every event gets its own instant
        self.ops: list[PendingOp] = []

    def _now(self) -> int:
        self.clock += 1
        return self.clock

    def invoke(
        self, client: int, kind: str, key: str, value: int | None, deadline: int
    ) -> PendingOp:
        op = PendingOp(len(self.ops), client, kind, key, value, self._now(), deadline)
        self.ops.append(op)
        return op

    def complete(self, op: PendingOp, result: int | None = None) -> None:
        if op.outcome == "pending":
            op.outcome, op.result, op.complete = "ok", result, self._now()

    def fail(self, op: PendingOp) -> None:
        """Definitely without effect (refused before entering the log)."""
        if op.outcome == "pending":
            op.outcome = "failed"

    def time_out(self, op: PendingOp) -> None:
        if op.outcome == "pending":
            op.outcome = "timeout"

    def for_checker(self) -> list[Op]:
        out: list[Op] = []
        for o in self.ops:
            if o.outcome == "ok":
                value = o.value if o.kind == "put" else o.result
                out.append(Op(o.client, o.kind, o.key, value, o.invoke, o.complete))
            elif o.kind == "put" and o.outcome in ("timeout", "pending"):
                out.append(Op(o.client, o.kind, o.key, o.value, o.invoke, None))
        return out

    def counts(self) -> dict[str, int]:
        c: dict[str, int] = {}
        for o in self.ops:
            k = f"{o.kind}:{o.outcome}"
            c[k] = c.get(k, 0) + 1
        return c

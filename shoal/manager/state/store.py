"""The cluster state: in-memory tables per object kind, one write path.

`update(fn)` runs `fn` against a transaction, turns what it wrote into a `Batch`, hands the
batch to the `Log` (local persistence now, Raft later) and returns once the batch is
committed and applied. Only `apply` mutates the tables; it runs for every committed batch
in commit order, on every replica, and publishes one event per change followed by a
`Commit`.

Writers are committed in groups (swarmkit's batching) by a committer task: transactions
that arrive while a batch is being committed wait together; the next group runs them one
after another against one `Tx` (each sees the writes of those before it, a failing one is
rolled back alone) and proposes all their writes as ONE batch, one log entry. A
transaction's version checks hold until it commits, since nothing else writes while its
group is in flight; the order of the group is the order of commit (serialisable, as with
one lock, but one fsync/round for all).

Objects handed out by `view()` are the stored ones and must be treated as read-only;
`Tx.get`/`Tx.find` hand out copies that the caller may edit and pass back to `Tx.update`.
"""

from __future__ import annotations

import asyncio
import builtins
import copy
import secrets
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeVar

import msgspec

from shoal.api.codec import clone
from shoal.api.timefmt import now_rfc3339
from shoal.errors import Conflict, NotFound, OutOfSequence
from shoal.manager.state.changes import KINDS, Batch, Change, decode_batch, encode_batch
from shoal.manager.state.tables import Table, TxTable, TypedTables

__all__ = [
    "Commit",
    "Event",
    "Log",
    "ReadView",
    "Store",
    "Table",
    "Tx",
    "TxTable",
    "commit_of",
    "new_id",
]

T = TypeVar("T")
_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"


def new_id() -> str:
    """A 25-character lowercase base-36 ID, as swarmkit makes them: 128 random bits in base
    36, zero-padded (36**25 > 2**128). One read of the system's random source, not one per
    character (`secrets.choice` 25 times was most of the CPU of creating an object)."""
    n = int.from_bytes(secrets.token_bytes(16), "big")
    digits = []
    for _ in range(25):
        n, d = divmod(n, 36)
        digits.append(_ALPHABET[d])
    return "".join(reversed(digits))


@dataclass(frozen=True)
class Event:
    kind: str
    action: str  # create | update | delete
    obj: Any
    old: Any | None
    at: str = ""  # the batch's (leader's) timestamp, RFC 3339


RECENT_EVENTS = 1024  # how many past events `Store.recent` keeps (GET /events?since= replay)


@dataclass(frozen=True)
class Commit:
    index: int


async def commit_of(queue: asyncio.Queue[Event | Commit], kinds: frozenset[str]) -> None:
    """Wait on a `Store.watch` queue for a commit that wrote an object of one of `kinds`
    (or one without events: a reloaded state). Watchers of a few kinds skip the rest: a
    burst of secret writes need not rebuild a node's network view per commit."""
    touched = seen = False
    while True:
        item = await queue.get()
        if isinstance(item, Commit):
            if touched or not seen:
                return
            touched = seen = False
        else:
            seen = True
            touched = touched or item.kind in kinds


class Log(Protocol):
    """Where batches go to be committed.

    `propose` returns once the batch is durable and `Store.apply` has run for it (on this
    replica); it raises `Unavailable` when this node cannot commit (not the leader, no quorum).
    """

    async def propose(self, batch: bytes) -> None: ...


NAMED_KINDS = frozenset({"service", "network", "secret", "config"})  # objects with spec.name
_Names = dict[str, dict[str, set[str]]]  # kind -> spec.name -> IDs (networks may share one)


def _name_of(obj: Any) -> str:
    return str(obj.spec.name)


class ReadView(TypedTables):
    """Committed state; `view.services.get(id)` etc. are the typed reads (`tables.py`)."""

    def __init__(self, tables: dict[str, dict[str, Any]], names: _Names | None = None) -> None:
        self._tables = tables
        self._names = names

    def named(self, kind: str, name: str) -> builtins.list[Any]:
        if self._names is None or kind not in NAMED_KINDS:
            return self.find(kind, lambda o: getattr(o.spec, "name", None) == name)
        table = self._tables[kind]
        return [table[i] for i in self._names[kind].get(name, ())]

    def get(self, kind: str, obj_id: str) -> Any | None:
        return self._tables[kind].get(obj_id)

    def list(self, kind: str) -> builtins.list[Any]:
        return list(self._tables[kind].values())

    def find(self, kind: str, pred: Callable[[Any], bool]) -> builtins.list[Any]:
        return [o for o in self._tables[kind].values() if pred(o)]


class Tx(TypedTables):
    """A write transaction: reads see committed state plus this transaction's own writes.

    `tx.services.get(id)` / `tx.nodes.update(node)` etc. are the typed forms (`tables.py`).
    """

    writable = True

    def __init__(self, tables: dict[str, dict[str, Any]], names: _Names | None = None) -> None:
        self._tables = tables
        self._names = names
        self._writes: dict[tuple[str, str], tuple[Literal["create", "update", "delete"], Any]] = {}

    def _current(self, kind: str, obj_id: str) -> Any | None:
        pending = self._writes.get((kind, obj_id))
        if pending is not None:
            return None if pending[0] == "delete" else pending[1]
        return self._tables[kind].get(obj_id)

    def get(self, kind: str, obj_id: str) -> Any | None:
        obj = self._current(kind, obj_id)
        return None if obj is None else clone(obj)

    def _all(self, kind: str) -> Iterator[Any]:
        seen = set()
        for (k, obj_id), (action, obj) in self._writes.items():
            if k == kind:
                seen.add(obj_id)
                if action != "delete":
                    yield obj
        for obj_id, obj in self._tables[kind].items():
            if obj_id not in seen:
                yield obj

    def list(self, kind: str) -> builtins.list[Any]:
        return [clone(o) for o in self._all(kind)]

    def find(self, kind: str, pred: Callable[[Any], bool]) -> builtins.list[Any]:
        return [clone(o) for o in self._all(kind) if pred(o)]

    def scan(self, kind: str) -> builtins.list[Any]:
        """Shallow copies of every object of `kind` (this transaction's writes included),
        for passes over many objects that change few (a deep `list` of 300 tasks per
        reconciler pass was a quarter of a leader's loop in a burst). A copy's top-level
        fields may be reassigned and the copy handed to `update`; its nested structs are
        the committed object's own and must not be changed in place: `clone` the object
        (or `get` it) first."""
        return [copy.copy(o) for o in self._all(kind)]

    def named(self, kind: str, name: str) -> builtins.list[Any]:
        """Like `find(kind, spec.name == name)`: committed objects from the name index
        (unless this transaction rewrote them), then this transaction's own writes."""
        if self._names is None or kind not in NAMED_KINDS:
            return self.find(kind, lambda o: getattr(o.spec, "name", None) == name)
        table = self._tables[kind]
        ids = self._names[kind].get(name, ())
        found = [clone(table[i]) for i in ids if (kind, i) not in self._writes]
        for (k, _), (action, obj) in self._writes.items():
            if k == kind and action != "delete" and _name_of(obj) == name:
                found.append(clone(obj))
        return found

    def create(self, kind: str, obj: Any) -> None:
        if self._current(kind, obj.id) is not None:
            raise Conflict(f"{kind} {obj.id} already exists")
        prev = self._writes.get((kind, obj.id))
        self._writes[(kind, obj.id)] = ("update" if prev else "create", obj)

    def update(self, kind: str, obj: Any) -> None:
        """Store `obj`; refused if its Version.Index is not the stored one (optimistic locking)."""
        cur = self._current(kind, obj.id)
        if cur is None:
            raise NotFound(f"{kind} {obj.id} not found")
        if cur.version.index != obj.version.index:
            raise OutOfSequence("update out of sequence")
        prev = self._writes.get((kind, obj.id))
        self._writes[(kind, obj.id)] = (prev[0] if prev else "update", obj)

    def delete(self, kind: str, obj_id: str) -> None:
        if self._current(kind, obj_id) is None:
            raise NotFound(f"{kind} {obj_id} not found")
        prev = self._writes.get((kind, obj_id))
        if prev is not None and prev[0] == "create":
            del self._writes[(kind, obj_id)]
        else:
            self._writes[(kind, obj_id)] = ("delete", None)

    def batch(self, timestamp: str) -> Batch | None:
        if not self._writes:
            return None
        changes = [
            Change(action, kind, obj_id, b"" if obj is None else msgspec.msgpack.encode(obj))
            for (kind, obj_id), (action, obj) in self._writes.items()
        ]
        return Batch(timestamp, changes)


_Queued = tuple[Callable[[Tx], Any], "asyncio.Future[Any]"]


class Store:
    def __init__(self) -> None:
        self._tables: dict[str, dict[str, Any]] = {kind: {} for kind in KINDS}
        self._names: _Names = {kind: {} for kind in NAMED_KINDS}
        self._log: Log | None = None
        self._lock = asyncio.Lock()
        self._queued: list[_Queued] = []
        self._committer: asyncio.Task[None] | None = None
        self._watchers: list[asyncio.Queue[Event | Commit]] = []
        self.index = 0
        self.recent: deque[Event] = deque(maxlen=RECENT_EVENTS)  # a ring, oldest first

    def attach(self, log: Log) -> None:
        self._log = log

    # -- reads --------------------------------------------------------------------------
    def view(self) -> ReadView:
        return ReadView(self._tables, self._names)

    def watch(self) -> asyncio.Queue[Event | Commit]:
        """Subscribe to events. Take a `view()` in the same synchronous step to miss nothing."""
        queue: asyncio.Queue[Event | Commit] = asyncio.Queue()
        self._watchers.append(queue)
        return queue

    def unwatch(self, queue: asyncio.Queue[Event | Commit]) -> None:
        if queue in self._watchers:
            self._watchers.remove(queue)

    # -- the write path -----------------------------------------------------------------
    async def update(self, fn: Callable[[Tx], T]) -> T:
        """Run `fn` in a transaction and commit what it wrote; returns `fn`'s result."""
        assert self._log is not None, "store has no log attached"
        gate = getattr(self._log, "check_writable", None)
        if gate is not None:
            gate()  # e.g. a Raft follower: refused before `fn` runs (it is forwarded anyway)
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queued.append((fn, done))
        if self._committer is None or self._committer.done():
            self._committer = asyncio.create_task(self._commit_groups(), name="store-commit")
        result: T = await done
        return result

    async def _commit_groups(self) -> None:
        """Commit queued transactions, a group at a time, until none is left. A task of its
        own: no caller waits beyond its own group's commit for the groups after it."""
        try:
            while self._queued:
                async with self._lock:
                    await asyncio.sleep(0)  # one turn: writers ready to run join this group
                    group, self._queued = self._queued, []
                    await self._commit_group(group)
        except asyncio.CancelledError:  # the loop is going away: nobody waits forever
            for _, done in self._queued:
                done.cancel()
            self._queued = []
            raise

    async def _commit_group(self, group: builtins.list[_Queued]) -> None:
        assert self._log is not None
        tx = Tx(self._tables, self._names)
        results: builtins.list[tuple[asyncio.Future[Any], Any]] = []
        for fn, done in group:
            before = dict(tx._writes)
            try:
                results.append((done, fn(tx)))
            except BaseException as exc:  # this transaction only: roll back its writes
                tx._writes = before
                if not done.done():
                    done.set_exception(exc)
        batch = tx.batch(now_rfc3339())
        try:
            if batch is not None:
                await self._log.propose(encode_batch(batch))
        except BaseException as exc:
            for done, _ in results:
                if not done.done():
                    done.set_exception(exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        for done, result in results:
            if not done.done():
                done.set_result(result)

    def apply(self, raw: bytes) -> None:
        """Apply one committed batch (called by the log, in commit order)."""
        batch = decode_batch(raw)
        self.index += 1
        events: list[Event] = []
        for change in batch.changes:
            table = self._tables[change.kind]
            old = table.get(change.id)
            if change.action == "delete":
                if old is not None:
                    del table[change.id]
                    self._unname(change.kind, old)
                    events.append(Event(change.kind, "delete", old, old, batch.timestamp))
                continue
            obj = msgspec.msgpack.decode(change.data, type=KINDS[change.kind])
            obj.version.index = self.index
            obj.updated_at = batch.timestamp
            if old is None:
                obj.created_at = obj.created_at or batch.timestamp
            table[change.id] = obj
            if old is not None:
                self._unname(change.kind, old)
            self._name(change.kind, obj)
            action = "create" if old is None else "update"
            events.append(Event(change.kind, action, obj, old, batch.timestamp))
        self.recent.extend(events)
        for queue in self._watchers:
            for event in events:
                queue.put_nowait(event)
            queue.put_nowait(Commit(self.index))

    def _name(self, kind: str, obj: Any) -> None:
        if kind in NAMED_KINDS:
            self._names[kind].setdefault(_name_of(obj), set()).add(obj.id)

    def _unname(self, kind: str, obj: Any) -> None:
        if kind in NAMED_KINDS:
            ids = self._names[kind].get(_name_of(obj))
            if ids is not None:
                ids.discard(obj.id)
                if not ids:
                    del self._names[kind][_name_of(obj)]

    def load(self, objects: dict[str, list[Any]], index: int) -> None:
        """Replace the whole state (restore from disk or a snapshot); no events."""
        self._tables = {kind: {} for kind in KINDS}
        self._names = {kind: {} for kind in NAMED_KINDS}
        for kind, objs in objects.items():
            for obj in objs:
                self._tables[kind][obj.id] = obj
                self._name(kind, obj)
        self.index = index

    def publish_reload(self) -> None:
        """Tell watchers the whole state was replaced by `load` (a replica restored from a
        Raft snapshot): a bare Commit, so level-triggered watchers take a fresh look."""
        for queue in self._watchers:
            queue.put_nowait(Commit(self.index))

    def snapshot(self) -> dict[str, list[Any]]:
        return {kind: list(table.values()) for kind, table in self._tables.items()}

"""An in-process cluster of managers for tests and the benchmark: each has a real Store,
real SQLite Raft storage in its own directory, a RaftNode and a RaftLog, and they talk
over an InMemoryNetwork. Managers can be stopped gracefully, crashed (their tasks
cancelled wherever they are, like kill -9: nothing but the file survives) and restarted
from their files. Every wait is on a condition with a deadline."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from shoal.api.types import ContainerSpec, ServiceSpec, TaskSpec
from shoal.errors import Unavailable
from shoal.manager.raft import (
    InMemoryNetwork,
    NotLeader,
    RaftLog,
    RaftNode,
    RaftNodeConfig,
    SQLiteStorage,
)
from shoal.manager.state.store import Commit, Event, Store
from tests.polling import eventually

T = TypeVar("T")

FAST = RaftNodeConfig(tick_interval=0.02, election_tick=10, heartbeat_tick=1)


def spec(name: str, image: str = "busybox") -> ServiceSpec:
    return ServiceSpec(name=name, task_template=TaskSpec(container_spec=ContainerSpec(image=image)))


@dataclass
class Manager:
    id: int
    dir: Path
    store: Store = field(default_factory=Store)
    storage: SQLiteStorage | None = None
    log: RaftLog | None = None
    task: asyncio.Task[None] | None = None
    history: list[tuple[str, str, int]] = field(default_factory=list)
    leadership: list[bool] = field(default_factory=list)
    _watch: asyncio.Task[None] | None = None

    @property
    def node(self) -> RaftNode:
        assert self.log is not None, f"manager {self.id} is down"
        return self.log.node

    @property
    def up(self) -> bool:
        return self.task is not None and not self.task.done()

    def state(self) -> tuple[int, dict[str, list[bytes]]]:
        """The store's content, comparable across replicas."""
        tables = {
            kind: sorted(msgspec.msgpack.encode(o) for o in objs)
            for kind, objs in self.store.snapshot().items()
        }
        return self.store.index, tables


class Cluster:
    def __init__(
        self,
        root: Path,
        size: int,
        *,
        seed: int = 0,
        config: RaftNodeConfig = FAST,
        fsync: bool = True,
    ) -> None:
        self.rng = random.Random(seed)
        self.net = InMemoryNetwork(rng=random.Random(self.rng.getrandbits(64)))
        self.config = config
        self.fsync = fsync
        self.managers = {i: Manager(i, root / f"m{i}") for i in range(1, size + 1)}
        for m in self.managers.values():
            m.dir.mkdir(parents=True, exist_ok=True)
        self.voters = tuple(self.managers)

    def add_manager(self, i: int) -> Manager:
        """A new manager (not a founding voter): it starts with an empty storage."""
        m = self.managers[i] = Manager(i, self.managers[1].dir.parent / f"m{i}")
        m.dir.mkdir(parents=True, exist_ok=True)
        return m

    def __getitem__(self, i: int) -> Manager:
        return self.managers[i]

    def up(self) -> list[Manager]:
        return [m for m in self.managers.values() if m.up]

    # --- life cycle -------------------------------------------------------------------------

    def start(self, i: int, *, bootstrap: bool = True) -> Manager:
        m = self.managers[i]
        assert not m.up
        m.store = Store()
        storage = SQLiteStorage.open(m.dir / "raft.db", fsync=self.fsync)
        if storage.is_empty and bootstrap:
            storage.bootstrap(self.voters)
        m.storage = storage
        rng = random.Random(self.rng.getrandbits(64))
        m.log = RaftLog.open(m.store, i, storage, self.net.transport(i), self.config, rng=rng)
        m.store.attach(m.log)
        m.node.on_leadership(m.leadership.append)
        self.net.attach(i, m.node)
        m.task = asyncio.create_task(m.node.run(), name=f"manager-{i}")
        m._watch = asyncio.create_task(self._record(m))
        return m

    def start_all(self) -> None:
        for i in self.managers:
            self.start(i)

    async def _record(self, m: Manager) -> None:
        """Each replica's sequence of applied changes: (kind, id, Version.Index)."""
        queue: asyncio.Queue[Event | Commit] = m.store.watch()
        while True:
            ev = await queue.get()
            if isinstance(ev, Event) and ev.action != "delete":
                m.history.append((ev.kind, ev.obj.id, ev.obj.version.index))

    async def stop(self, i: int) -> None:
        m = self.managers[i]
        self.net.detach(i)
        await m.node.stop()
        await self._reap(m)

    async def crash(self, i: int) -> None:
        """Cancel the manager's tasks wherever they are; only its file survives."""
        m = self.managers[i]
        self.net.detach(i)
        assert m.task is not None
        m.task.cancel()
        await self._reap(m)

    async def _reap(self, m: Manager) -> None:
        for task in (m.task, m._watch):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if m.storage is not None:
            await m.storage.aclose()
        m.task = m._watch = None
        m.storage = None

    async def close(self) -> None:
        for m in self.managers.values():
            if m.task is not None:
                await self.crash(m.id)

    # --- waiting ----------------------------------------------------------------------------

    async def until(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        def check() -> bool:
            for m in self.managers.values():
                if m.task is not None and m.task.done() and not m.task.cancelled():
                    m.task.result()  # a node died of an error: show it
            return predicate()

        try:
            await eventually(check, timeout, what, interval=0.005)
        except AssertionError as e:
            raise AssertionError(f"{e}: {self}") from None

    def leader(self) -> Manager | None:
        ready = [m for m in self.up() if m.node.leader_ready]
        if len(ready) != 1:
            return None
        return ready[0]

    async def wait_leader(self, timeout: float = 10.0) -> Manager:
        await self.until(lambda: self.leader() is not None, timeout, "one ready leader")
        leader = self.leader()
        assert leader is not None
        return leader

    async def wait_converged(self, timeout: float = 10.0) -> None:
        """Every running manager applied all the leader committed and holds the same state."""

        def done() -> bool:
            leader = self.leader()
            if leader is None:
                return False
            target = leader.node.committed
            up = self.up()
            return all(m.node.applied >= target for m in up) and all(
                m.state() == leader.state() for m in up
            )

        await self.until(done, timeout, "all running managers to converge")

    async def write(self, fn: Callable[[Store], Awaitable[T]], timeout: float = 10.0) -> T:
        """Run a control-API call on the leader, retrying while there is none."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            leader = await self.wait_leader(max(0.1, deadline - loop.time()))
            try:
                return await fn(leader.store)
            except (NotLeader, Unavailable):
                if loop.time() > deadline:
                    raise

    def __repr__(self) -> str:
        parts = []
        for m in self.managers.values():
            if not m.up:
                parts.append(f"m{m.id}:down")
                continue
            n = m.node
            role = "L" if n.is_leader else "F"
            parts.append(
                f"m{m.id}:{role} t{n.term} lead={n.leader_id} commit={n.committed} "
                f"applied={n.applied} idx={m.store.index}"
            )
        return "Cluster(" + "; ".join(parts) + ")"


def last_index_on_disk(m: Manager) -> int:
    """The last log index in a stopped manager's file."""
    s = SQLiteStorage.open(m.dir / "raft.db")
    try:
        return s.last_index()
    finally:
        s.close()


def services(m: Manager) -> dict[str, Any]:
    return {s.spec.name: s for s in m.store.view().list("service")}

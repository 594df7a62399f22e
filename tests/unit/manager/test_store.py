"""The store's one write path: transactions, versions, events, durability."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shoal import timeouts
from shoal.api.types import Secret, SecretSpec, Service, ServiceSpec
from shoal.errors import Conflict, NotFound, OutOfSequence, Unavailable
from shoal.manager.state.locallog import LocalLog
from shoal.manager.state.store import Commit, Event, Store, Tx, new_id
from tests.polling import eventually


def make_store(tmp_path: Path) -> tuple[Store, LocalLog]:
    store = Store()
    log = LocalLog(tmp_path / "state.db", store)
    log.restore()
    store.attach(log)
    return store, log


async def test_update_commits_with_versions_and_events(tmp_path: Path) -> None:
    store, _ = make_store(tmp_path)
    queue = store.watch()
    await store.update(
        lambda tx: tx.create("service", Service(id="s1", spec=ServiceSpec(name="a")))
    )
    stored = store.view().get("service", "s1")
    assert stored.spec.name == "a"
    assert stored.version.index == 1
    assert stored.created_at and stored.updated_at
    event = queue.get_nowait()
    assert isinstance(event, Event) and event.action == "create" and event.kind == "service"
    assert isinstance(queue.get_nowait(), Commit)


async def test_stale_version_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    store, _ = make_store(tmp_path)
    await store.update(
        lambda tx: tx.create("service", Service(id="s1", spec=ServiceSpec(name="a")))
    )
    stale = store.view().get("service", "s1")
    stale_copy = Service(id="s1", spec=ServiceSpec(name="b"), version=stale.version)

    def bump(tx: Tx) -> None:
        svc = tx.get("service", "s1")
        svc.spec.name = "c"
        tx.update("service", svc)

    await store.update(bump)
    with pytest.raises(OutOfSequence):
        await store.update(lambda tx: tx.update("service", stale_copy))
    assert store.view().get("service", "s1").spec.name == "c"


async def test_failed_transaction_writes_nothing(tmp_path: Path) -> None:
    store, _ = make_store(tmp_path)

    def fn(tx: Tx) -> None:
        tx.create("service", Service(id="s1", spec=ServiceSpec(name="a")))
        raise Conflict("boom")

    with pytest.raises(Conflict):
        await store.update(fn)
    assert store.view().get("service", "s1") is None
    with pytest.raises(NotFound):
        await store.update(lambda tx: tx.delete("service", "nope"))


async def test_tx_get_returns_copies(tmp_path: Path) -> None:
    store, _ = make_store(tmp_path)
    await store.update(
        lambda tx: tx.create("service", Service(id="s1", spec=ServiceSpec(name="a")))
    )

    def edit_without_saving(tx: Tx) -> None:
        tx.get("service", "s1").spec.name = "mutated"

    await store.update(edit_without_saving)
    assert store.view().get("service", "s1").spec.name == "a"


async def test_state_survives_restart(tmp_path: Path) -> None:
    store, log = make_store(tmp_path)
    await store.update(
        lambda tx: tx.create("service", Service(id="s1", spec=ServiceSpec(name="a")))
    )
    await store.update(
        lambda tx: tx.create("service", Service(id="s2", spec=ServiceSpec(name="b")))
    )
    await store.update(lambda tx: tx.delete("service", "s1"))
    log.close()
    again, _ = make_store(tmp_path)
    assert [s.id for s in again.view().list("service")] == ["s2"]
    assert again.index == 3
    assert again.view().get("service", "s2").version.index == 2


class CountingLog:
    """Commits at once, counting proposals; each takes a loop turn (a disk or Raft round)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.proposals = 0

    async def propose(self, batch: bytes) -> None:
        self.proposals += 1
        await asyncio.sleep(0)
        self.store.apply(batch)


async def test_concurrent_transactions_commit_together_in_one_entry() -> None:
    store = Store()
    log = CountingLog(store)
    store.attach(log)
    await store.update(
        lambda tx: tx.create("service", Service(id="s0", spec=ServiceSpec(name="z")))
    )
    first = log.proposals

    def rename(i: int) -> Callable[[Tx], int]:
        def fn(tx: Tx) -> int:
            svc = tx.get("service", "s0")  # sees the writes of those before it in the group
            svc.spec.name += str(i)
            tx.update("service", svc)
            tx.create("service", Service(id=f"s{i + 1}", spec=ServiceSpec(name=f"n{i}")))
            return i

        return fn

    results = await asyncio.gather(*(store.update(rename(i)) for i in range(20)))
    assert results == list(range(20))
    assert log.proposals - first <= 2  # the first alone, the other 19 in one batch
    assert store.view().get("service", "s0").spec.name == "z" + "".join(map(str, range(20)))
    assert len(store.view().list("service")) == 21


async def test_a_failing_transaction_in_a_group_is_rolled_back_alone() -> None:
    store = Store()
    store.attach(CountingLog(store))

    def bad(tx: Tx) -> None:
        tx.create("service", Service(id="bad", spec=ServiceSpec(name="bad")))
        raise Conflict("no")

    outcomes = await asyncio.gather(
        store.update(lambda tx: tx.create("service", Service(id="a", spec=ServiceSpec(name="a")))),
        store.update(bad),
        store.update(lambda tx: tx.create("service", Service(id="b", spec=ServiceSpec(name="b")))),
        return_exceptions=True,
    )
    assert isinstance(outcomes[1], Conflict)
    assert sorted(s.id for s in store.view().list("service")) == ["a", "b"]


async def test_a_refused_proposal_fails_every_transaction_of_its_group() -> None:
    store = Store()

    class Refusing:
        async def propose(self, batch: bytes) -> None:
            await asyncio.sleep(0)
            raise Unavailable("not the leader")

    store.attach(Refusing())
    outcomes = await asyncio.gather(
        *(
            store.update(lambda tx, i=i: tx.create("service", Service(id=f"s{i}")))
            for i in range(3)
        ),
        return_exceptions=True,
    )
    assert all(isinstance(o, Unavailable) for o in outcomes)
    assert store.view().list("service") == []


class GatedLog:
    """Each proposal waits for its own release: a Raft round that takes as long as the test
    says. `check_writable` refuses while `writable` is False (a follower)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.rounds: list[asyncio.Event] = []
        self.writable = True
        self.proposed = 0

    def check_writable(self) -> None:
        if not self.writable:
            raise Unavailable("not the leader")

    async def propose(self, batch: bytes) -> None:
        self.proposed += 1
        gate = asyncio.Event()
        self.rounds.append(gate)
        await gate.wait()
        self.store.apply(batch)


async def test_a_writer_returns_once_its_group_commits_not_after_later_groups() -> None:
    """The first writer used to drive every later group before returning; a committer task
    drives them now, so its answer does not wait for writers that came after it."""
    store = Store()
    log = GatedLog(store)
    store.attach(log)
    first = asyncio.create_task(store.update(lambda tx: tx.create("service", Service(id="a"))))
    await eventually(lambda: len(log.rounds) == 1)
    later = asyncio.create_task(store.update(lambda tx: tx.create("service", Service(id="b"))))
    log.rounds[0].set()  # the first group commits; "b" forms the next group, still in flight
    await eventually(lambda: len(log.rounds) == 2)
    await timeouts.wait_for(first, 5)
    assert not later.done()
    log.rounds[1].set()
    await timeouts.wait_for(later, 5)
    assert sorted(s.id for s in store.view().list("service")) == ["a", "b"]


async def test_a_log_that_refuses_writes_refuses_before_the_transaction_runs() -> None:
    store = Store()
    log = GatedLog(store)
    log.writable = False
    store.attach(log)
    ran = []
    with pytest.raises(Unavailable, match="not the leader"):
        await store.update(lambda tx: ran.append(1))
    assert ran == [] and log.proposed == 0


_NAMES = ("a", "b", "c")
_op = st.tuples(
    st.sampled_from(("create", "rename", "delete")), st.integers(0, 5), st.sampled_from(_NAMES)
)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(_op, max_size=4), max_size=8), st.booleans())
def test_the_name_index_answers_as_a_scan_does(groups: list[list[tuple[str, int, str]]],
                                                restore: bool) -> None:
    """`named` (index, plus a transaction's own writes) equals `find(spec.name == name)`,
    inside transactions and after commits, deletes, renames and a restore (`load`)."""

    async def run() -> None:
        store = Store()
        store.attach(CountingLog(store))

        def txn(ops: list[tuple[str, int, str]]) -> Callable[[Tx], None]:
            def fn(tx: Tx) -> None:
                for action, i, name in ops:
                    cur = tx.get("secret", f"s{i}")
                    if action == "create" and cur is None:
                        tx.create("secret", Secret(id=f"s{i}", spec=SecretSpec(name=name)))
                    elif action == "rename" and cur is not None:
                        cur.spec.name = name
                        tx.update("secret", cur)
                    elif action == "delete" and cur is not None:
                        tx.delete("secret", f"s{i}")
                    for n in _NAMES:  # inside the transaction, with its writes pending
                        pred = lambda o, n=n: o.spec.name == n  # noqa: E731
                        want = sorted(o.id for o in tx.find("secret", pred))
                        assert sorted(o.id for o in tx.secrets.named(n)) == want

            return fn

        for ops in groups:
            await store.update(txn(ops))
            view = store.view()
            for n in _NAMES:
                want = sorted(o.id for o in view.find("secret", lambda o, n=n: o.spec.name == n))
                assert sorted(o.id for o in view.secrets.named(n)) == want
        if restore:
            again = Store()
            again.load(store.snapshot(), store.index)
            for n in _NAMES:
                assert sorted(o.id for o in again.view().secrets.named(n)) == sorted(
                    o.id for o in store.view().secrets.named(n)
                )

    asyncio.run(run())


def test_new_ids_are_25_base36_characters_and_distinct() -> None:
    ids = {new_id() for _ in range(5000)}
    assert len(ids) == 5000
    assert all(len(i) == 25 and set(i) <= set("0123456789abcdefghijklmnopqrstuvwxyz")
               for i in ids)
    # 128 random bits: the leading digit spreads over 0-f (36**25 / 2**128 ~ 2.4)
    assert len({i[0] for i in ids}) >= 8

"""The replicated endpoint state and the EndpointTable around it."""

from __future__ import annotations

import asyncio
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shoal import timeouts
from shoal.gossip.endpoints import EndpointEntry, EndpointState, PublishedPort
from shoal.gossip.messages import EntryBody, Record
from shoal.gossip.table import EndpointTable


def entry(
    task: str, node: str = "n1", ready: bool = True, addr: str = "198.19.1.2"
) -> EndpointEntry:
    return EndpointEntry("svc", task, node, addr, ready, (PublishedPort("tcp", 8080, 80),))


def rec(owner: str, key: str, version: int, addr: str | None = "198.19.2.2") -> Record:
    body = None if addr is None else EntryBody("svc", addr, True)
    return Record(owner, key, version, body)


def replicated() -> EndpointState:
    return EndpointState(replicated=True)


# -- local publishing -----------------------------------------------------------------
def test_the_owner_versions_every_change_and_hands_it_out_once() -> None:
    s = replicated()
    s.set_local(entry("t1"))
    s.set_local(entry("t1"))  # no change, no version
    s.set_local(entry("t1", ready=False))
    s.remove_local("t1")
    changes = s.take_changes()
    assert [(r.owner, r.key, r.version, r.body is None) for r in changes] == [
        ("n1", "t1", 1, False), ("n1", "t1", 2, False), ("n1", "t1", 3, True)
    ]
    assert changes[0].body is not None and changes[0].body.ports[0].published == 8080
    assert s.take_changes() == []
    assert s.entries() == []
    assert s.records() == [Record("n1", "t1", 3, None)]  # the tombstone travels


def test_without_replication_a_removal_leaves_nothing_behind() -> None:
    s = EndpointState()
    s.set_local(entry("t1"))
    s.remove_local("t1")
    assert s.records() == []


def test_a_tombstone_expires_after_its_ttl() -> None:
    s = EndpointState(tombstone_ttl=10, replicated=True)
    s.set_local(entry("t1"))
    s.remove_local("t1")
    s.advance(9)
    assert s.version_of("n1", "t1") == 2
    s.advance(10)
    assert s.version_of("n1", "t1") is None


# -- merging --------------------------------------------------------------------------
def test_merge_keeps_the_highest_version_per_owner_and_key() -> None:
    s = replicated()
    assert s.merge(rec("n2", "t", 2, "198.19.2.2"))
    assert not s.merge(rec("n2", "t", 1, "198.19.2.1"))  # older
    assert not s.merge(rec("n2", "t", 2, "198.19.2.9"))  # equal: never a conflict to solve
    assert [e.address for e in s.entries()] == ["198.19.2.2"]
    assert s.merge(rec("n2", "t", 3, None))
    assert s.entries() == []
    assert not s.merge(rec("n2", "t", 2, "198.19.2.2"))  # the tombstone wins over the past


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["n2", "n3"]), st.sampled_from(["a", "b"]),
                          st.integers(1, 6), st.booleans()), max_size=12))
def test_merging_in_any_order_gives_the_same_table(ops: list[tuple[str, str, int, bool]]) -> None:
    # one owner never issues two different records under one version
    records = {(o, k, v): rec(o, k, v, None if dead else f"198.19.{v}.{len(k)}")
               for o, k, v, dead in ops}
    results = set()
    for order in itertools.islice(itertools.permutations(records.values()), 24):
        s = replicated()
        for r in order:
            s.merge(r)
        results.add((tuple(s.entries()), tuple(s.records())))
    assert len(results) <= 1


def test_remove_owner_drops_all_its_entries_in_one_change() -> None:
    s = replicated()
    for i in range(3):
        s.merge(rec("dead", f"t{i}", i + 1))
    s.merge(rec("alive", "x", 1))
    seen: list[int] = []
    s.listeners.append(lambda: seen.append(len(s.entries())))
    assert s.remove_owner("dead")
    assert seen == [1]
    assert [e.node_id for e in s.entries()] == ["alive"]


# -- the owner refutes leftovers ----------------------------------------------------------
def test_a_leftover_of_a_former_life_is_withdrawn_at_a_newer_version() -> None:
    s = replicated()
    s.adopt_owner("n1")
    fix = s.refute(rec("n1", "old", 40))
    assert fix == Record("n1", "old", 41, None)
    s.set_local(entry("new"))
    assert s.take_changes()[-1].version == 42  # the counter jumped past what it heard


def test_an_owner_restates_a_live_entry_the_cluster_has_older_news_of() -> None:
    s = replicated()
    s.adopt_owner("n1")
    assert s.refute(rec("n1", "t1", 7, None)) is None  # agreed: gone; counter -> 7
    s.set_local(entry("t1"))  # version 8
    assert s.refute(rec("n1", "t1", 9, None)) == Record(
        "n1", "t1", 10, s.records()[0].body
    )
    assert [e.task_id for e in s.entries()] == ["t1"]


def test_agreement_at_a_newer_version_is_adopted_silently() -> None:
    s = replicated()
    s.set_local(entry("t1"))
    (mine,) = s.take_changes()
    assert s.refute(Record("n1", "t1", 5, mine.body)) is None
    assert s.version_of("n1", "t1") == 5
    s.set_local(entry("t1", ready=False))
    assert s.take_changes()[0].version == 6


# -- reconcile --------------------------------------------------------------------------
def test_reconcile_tombstones_own_and_suppresses_others_entries() -> None:
    s = replicated()
    s.set_local(entry("mine-stale"))
    s.set_local(entry("mine-ok"))
    s.merge(rec("n2", "theirs-stale", 4))
    s.take_changes()
    s.advance(100)
    removed = s.reconcile({("n1", "mine-ok")}, grace=10)
    assert removed == 2
    assert [e.task_id for e in s.entries()] == ["mine-ok"]
    assert [(r.key, r.body) for r in s.take_changes()] == [("mine-stale", None)]
    # the suppression is local: not offered to others, and the same version cannot undo it
    assert all(r.key != "theirs-stale" for r in s.records())
    assert not s.merge(rec("n2", "theirs-stale", 4))
    assert s.entries() == [entry("mine-ok")]


def test_reconcile_spares_entries_younger_than_the_grace() -> None:
    s = replicated()
    s.advance(100)
    s.merge(rec("n2", "young", 1))
    s.advance(105)
    assert s.reconcile(set(), grace=10) == 0
    s.advance(110)
    assert s.reconcile(set(), grace=10) == 1


# -- the asyncio table ------------------------------------------------------------------
async def test_the_table_keeps_its_reading_api() -> None:
    table = EndpointTable()
    seen = table.version
    waiter = asyncio.create_task(table.wait_change(seen))
    await asyncio.sleep(0)
    table.set(entry("t1"))
    assert await timeouts.wait_for(waiter, 1) == table.version != seen
    assert table.entries() == [entry("t1")]
    v = table.version
    table.set(entry("t1"))
    assert table.version == v  # no change, no wake-up
    table.remove("t1")
    assert table.entries() == [] and table.version == v + 1
    table.remove("t1")
    assert table.version == v + 1


async def test_merged_remote_entries_wake_the_readers() -> None:
    table = EndpointTable(EndpointState(replicated=True))
    seen = table.version
    waiter = asyncio.create_task(table.wait_change(seen))
    await asyncio.sleep(0)
    table.state.merge(rec("n9", "remote", 1))
    await timeouts.wait_for(waiter, 1)
    assert [e.node_id for e in table.entries()] == ["n9"]


def test_table_reconcile_without_gossip_has_no_grace() -> None:
    table = EndpointTable()
    table.set(entry("t1"))
    table.set(entry("t2"))
    assert table.reconcile([("n1", "t1")]) == 1
    assert [e.task_id for e in table.entries()] == ["t1"]


def test_ports_come_from_the_entries_majority_first() -> None:
    table = EndpointTable()
    old = (PublishedPort("tcp", 8080, 80),)
    new = (PublishedPort("tcp", 8080, 8000), PublishedPort("udp", 53, 53))
    table.set(EndpointEntry("web", "t1", "n1", "198.19.1.2", True, new))
    table.set(EndpointEntry("web", "t2", "n1", "198.19.1.3", True, new))
    table.set(EndpointEntry("web", "t3", "n1", "198.19.1.4", True, old))
    table.set(EndpointEntry("web", "t4", "n1", "198.19.1.5", False, old))
    table.set(EndpointEntry("db", "t5", "n1", "198.19.1.6", True))
    assert table.ports() == [
        ("web", "tcp", 8080, 8000, "ingress"),
        ("web", "udp", 53, 53, "ingress"),
    ]


@pytest.mark.parametrize("ready", [True, False])
def test_a_lone_entry_still_publishes_its_ports(ready: bool) -> None:
    table = EndpointTable()
    table.set(entry("t1", ready=ready))
    assert table.ports() == [("svc", "tcp", 8080, 80, "ingress")]


async def test_table_ports_is_a_port_source_for_the_mesh() -> None:
    from shoal.gossip.ports import TablePorts
    from shoal.mesh.model import PortSpec

    table = EndpointTable()
    source = TablePorts(table)
    waiter = asyncio.create_task(source.changed())
    await asyncio.sleep(0)
    table.set(entry("t1"))
    await timeouts.wait_for(waiter, 1)
    assert source.ports() == [PortSpec("svc", "tcp", 8080, 80, "ingress")]


# -- suspects ---------------------------------------------------------------------------
def test_a_suspects_entries_read_not_ready_until_cleared() -> None:
    s = replicated()
    s.merge(rec("sus", "t1", 1))
    s.merge(rec("ok", "t2", 1))
    seen: list[int] = []
    s.listeners.append(lambda: seen.append(s.generation))
    s.set_suspect("sus", True)
    s.set_suspect("sus", True)  # no news: no second change
    assert {(e.node_id, e.ready) for e in s.entries()} == {("sus", False), ("ok", True)}
    assert len(seen) == 1
    s.set_suspect("sus", False)
    assert all(e.ready for e in s.entries())
    assert len(seen) == 2
    # the record itself was never changed: what is gossiped stays the owner's word
    assert all(r.body is not None and r.body.ready for r in s.records())


def test_suspecting_an_owner_without_entries_wakes_nobody() -> None:
    s = replicated()
    s.merge(rec("ok", "t2", 1))
    seen: list[int] = []
    s.listeners.append(lambda: seen.append(1))
    s.set_suspect("empty", True)
    assert seen == []


def test_a_dead_suspect_is_forgotten_with_its_entries() -> None:
    s = replicated()
    s.merge(rec("sus", "t1", 1))
    s.set_suspect("sus", True)
    s.remove_owner("sus")
    s.merge(rec("sus", "t1", 2))  # it came back (refuted): a fresh entry is ready
    assert [e.ready for e in s.entries()] == [True]


def test_a_service_only_on_a_suspect_keeps_its_tasks_ready() -> None:
    s = replicated()
    s.merge(rec("sus", "t1", 1))  # service "svc", also on "ok"
    s.merge(Record("sus", "t3", 1, EntryBody("lonely", "198.19.2.3", True)))
    s.merge(rec("ok", "t2", 1))
    s.set_suspect("sus", True)
    ready = {(e.service_id, e.node_id): e.ready for e in s.entries()}
    assert ready == {("svc", "sus"): False, ("svc", "ok"): True, ("lonely", "sus"): True}

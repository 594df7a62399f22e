"""The embedded DNS server's answers: names -> addresses per asking task, and the wire."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.reversename

from shoal.agent.dns.names import Attachment, NameTable
from shoal.agent.dns.wire import answer

BACK = [
    Attachment("b1", "sb", "app_back", "n1", "198.18.1.3", "198.18.1.2", ("back",)),
    Attachment("b2", "sb", "app_back", "n1", "198.18.1.4", "198.18.1.2", ("back",)),
    Attachment("b3", "sb", "app_back", "n1", "198.18.1.5", "198.18.1.2", ("back",), ready=False),
]
FRONT = [Attachment("f1", "sf", "app_front", "n1", "198.18.1.7", "198.18.1.6", ("front",))]
OTHER = [Attachment("o1", "so", "other", "n2", "198.18.2.3", "198.18.2.2")]
RR = [
    Attachment("r1", "sr", "rr", "n1", "198.18.1.10"),
    Attachment("r2", "sr", "rr", "n1", "198.18.1.9"),
]
TABLE = NameTable([*BACK, *FRONT, *OTHER, *RR])


def test_service_and_aliases_resolve_to_the_vip_for_tasks_on_the_network() -> None:
    for name in ("app_back", "back", "BACK.", "back."):
        found = TABLE.lookup("f1", name)
        assert found is not None and found.addresses == ("198.18.1.2",), name


def test_tasks_form_lists_only_ready_tasks() -> None:
    found = TABLE.lookup("f1", "tasks.back")
    assert found is not None and found.addresses == ("198.18.1.3", "198.18.1.4")
    lonely = NameTable([BACK[2], *FRONT])
    assert lonely.lookup("f1", "tasks.app_back") is not None
    assert lonely.lookup("f1", "tasks.app_back").addresses == ()  # type: ignore[union-attr]


def test_dnsrr_services_answer_their_ready_tasks() -> None:
    found = TABLE.lookup("f1", "rr")
    assert found is not None and found.addresses == ("198.18.1.9", "198.18.1.10")


def test_other_networks_names_are_not_answered() -> None:
    assert TABLE.lookup("o1", "back") is None
    assert TABLE.lookup("o1", "tasks.back") is None
    assert TABLE.lookup("f1", "other") is None
    assert TABLE.lookup("nobody", "back") is None
    assert TABLE.lookup("f1", "example.com") is None


def _ask(name: str, rdtype: str = "A", asker: str = "f1", **kw: object) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype)
    wire = _run(answer(query.to_wire(), TABLE, asker, None, tcp=bool(kw.get("tcp"))))
    assert wire is not None
    reply = dns.message.from_wire(wire)
    assert reply.id == query.id
    return reply


def _run(coro: Coroutine[Any, Any, bytes | None]) -> bytes | None:
    return asyncio.run(coro)


def test_wire_answers_a_records_with_dockers_ttl() -> None:
    reply = _ask("back")
    assert reply.rcode() == dns.rcode.NOERROR and reply.flags & dns.flags.AA
    [rrset] = reply.answer
    assert rrset.ttl == 600 and [r.address for r in rrset] == ["198.18.1.2"]
    empty = _ask("back", "AAAA")
    assert empty.rcode() == dns.rcode.NOERROR and empty.answer == []


def test_wire_refuses_foreign_names_without_a_forwarder() -> None:
    assert _ask("example.com").rcode() == dns.rcode.REFUSED
    assert _ask("back", asker="o1").rcode() == dns.rcode.REFUSED


def test_wire_forwards_foreign_names_to_the_forwarder() -> None:
    asked: list[str] = []

    async def forward(query: dns.message.Message) -> dns.message.Message:
        asked.append(query.question[0].name.to_text())
        reply = dns.message.make_response(query)
        reply.set_rcode(dns.rcode.NXDOMAIN)
        reply.id = 1  # the server puts the client's id back
        return reply

    query = dns.message.make_query("nope.example.", "A")
    wire = _run(answer(query.to_wire(), TABLE, "f1", forward))
    assert wire is not None
    reply = dns.message.from_wire(wire)
    assert reply.rcode() == dns.rcode.NXDOMAIN and reply.id == query.id
    assert asked == ["nope.example."]
    # cluster names never leave the node
    _run(answer(dns.message.make_query("back", "A").to_wire(), TABLE, "f1", forward))
    assert asked == ["nope.example."]


def test_malformed_queries_get_formerr_or_nothing() -> None:
    assert _run(answer(b"\x01", TABLE, "f1", None)) is None
    wire = dns.message.make_query("back", "A").to_wire()
    broken = _run(answer(wire[:14], TABLE, "f1", None))
    assert broken is not None
    assert broken[:2] == wire[:2] and broken[3] & 0x0F == dns.rcode.FORMERR
    response = dns.message.make_response(dns.message.make_query("back", "A")).to_wire()
    assert _run(answer(response, TABLE, "f1", None)) is None


def test_udp_answers_that_do_not_fit_are_truncated() -> None:
    many = [
        Attachment(f"t{i}", "sm", "many", "n1", f"198.18.1.{i + 20}", aliases=("m" * 60,))
        for i in range(120)
    ]
    table = NameTable([*many, *FRONT])
    query = dns.message.make_query("m" * 60, "A")
    wire = _run(answer(query.to_wire(), table, "f1", None))
    assert wire is not None and len(wire) <= 512
    reply = dns.message.from_wire(wire)
    assert reply.flags & dns.flags.TC and reply.answer == []
    full = _run(answer(query.to_wire(), table, "f1", None, tcp=True))
    assert full is not None
    assert len(dns.message.from_wire(full).answer[0]) == 120


NAMED = [
    Attachment("t1", "sb", "back", "n1", "198.18.1.3", "198.18.1.2", ("back",), True,
               "back.1.t1", "b-host", "appnet"),
    Attachment("t2", "sb", "back", "n1", "198.18.1.4", "198.18.1.2", ("back",), False,
               "back.2.t2", "b-host", "appnet"),
    Attachment("o1", "so", "other", "n2", "198.18.2.3", "198.18.2.2", (), True,
               "other.1.o1", "o-host", "othernet"),
    *FRONT,
]


def test_task_names_own_hostname_and_ptr_on_shared_networks_only() -> None:
    table = NameTable(NAMED)
    found = table.lookup("f1", "back.2.t2")
    assert found is not None and found.addresses == ("198.18.1.4",)  # it exists: answered
    assert table.lookup("o1", "back.1.t1") is None
    own = table.lookup("t1", "b-host")
    assert own is not None and own.addresses == ("198.18.1.3",)
    assert table.lookup("f1", "b-host") is None  # another task's hostname is not a name
    assert table.reverse("f1", "198.18.1.3") == "back.1.t1.appnet"
    assert table.reverse("o1", "198.18.1.3") is None
    assert table.reverse("f1", "198.18.2.3") is None
    query = dns.message.make_query(dns.reversename.from_address("198.18.1.4"), "PTR")
    wire = _run(answer(query.to_wire(), table, "f1", None))
    assert wire is not None
    [rrset] = dns.message.from_wire(wire).answer
    assert [r.target.to_text() for r in rrset] == ["back.2.t2.appnet."]
    foreign = dns.message.make_query(dns.reversename.from_address("198.18.2.3"), "PTR")
    reply = _run(answer(foreign.to_wire(), table, "f1", None))
    assert reply is not None and dns.message.from_wire(reply).rcode() == dns.rcode.REFUSED


def test_multi_address_answers_go_out_in_turning_orders() -> None:
    orders = set()
    for _ in range(60):  # both orders of two addresses: a fixed order fails, 2**-59 chance
        wire = _run(answer(dns.message.make_query("rr", "A").to_wire(), TABLE, "f1", None))
        assert wire is not None
        [rrset] = dns.message.from_wire(wire).answer
        orders.add(tuple(r.address for r in rrset))
    assert orders == {("198.18.1.9", "198.18.1.10"), ("198.18.1.10", "198.18.1.9")}


def test_a_service_without_tasks_resolves_from_the_managers_records() -> None:
    from shoal.agent.dns.attachments import service_attachments
    from shoal.api.netview import NetService

    records = (NetService("sn", "app_new", "n1", "198.18.1.40", ("new",)),
               NetService("sd", "app_rr", "n1", "", ()),
               NetService("so", "app_far", "n2", "198.18.2.40", ()))
    table = NameTable([*FRONT, *service_attachments(records)])
    for name in ("app_new", "new"):
        found = table.lookup("f1", name)
        assert found is not None and found.addresses == ("198.18.1.40",)
    tasks = table.lookup("f1", "tasks.new")
    assert tasks is not None and tasks.addresses == ()  # known, no task yet
    dnsrr = table.lookup("f1", "app_rr")
    assert dnsrr is not None and dnsrr.addresses == ()
    assert table.lookup("f1", "app_far") is None  # not on the asker's network
    assert table.lookup("service:sn", "app_far") is None

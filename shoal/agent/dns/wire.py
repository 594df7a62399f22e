"""One DNS query's bytes -> the response's bytes; dnspython does the wire format.

Answers, as Docker's embedded resolver does: a cluster name (see `names`) gets its A records
(TTL 600) or, for AAAA and other types, an empty NOERROR; `tasks.X` with no ready task gets
an empty NOERROR. Any other name goes to the forwarder; without one (the lab's nodes have
no outside resolver) it is REFUSED. Malformed queries get FORMERR when their header can be
read and nothing otherwise; other opcodes get NOTIMP. A UDP answer that does not fit the
client's size (512, or its EDNS payload) is sent truncated (TC) so the client retries on TCP.
Several addresses go out shuffled (dnspython's rdataset rendering shuffles, as Docker's
resolver shuffles dnsrr and tasks.X answers); a PTR query
for a task's address on a shared network gets `TASKNAME.NETWORK.`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.reversename
import dns.rrset
from dns.rdtypes.ANY.PTR import PTR as PtrRecord
from dns.rdtypes.IN.A import A as ARecord

from shoal.agent.dns.names import NameTable

__all__ = ["TTL", "Forwarder", "answer"]

TTL = 600
UDP_DEFAULT = 512
TCP_MAX = 65535
Forwarder = Callable[[dns.message.Message], Awaitable[dns.message.Message | None]]


def _formerr(wire: bytes) -> bytes | None:
    if len(wire) < 12:
        return None
    reply = bytearray(wire[:12])
    reply[2] = (reply[2] | 0x80) & 0xF9  # QR on, AA/TC off, keep opcode and RD
    reply[3] = 0x80 | dns.rcode.FORMERR  # RA on
    reply[4:12] = b"\0" * 8  # no sections
    return bytes(reply)


def _encode(reply: dns.message.Message, limit: int) -> bytes:
    try:
        return reply.to_wire(max_size=limit)
    except dns.exception.TooBig:
        reply.answer = []
        reply.flags |= dns.flags.TC
        return reply.to_wire(max_size=limit)


def _reverse(
    query: dns.message.Message, table: NameTable, asker: str
) -> dns.message.Message | None:
    question = query.question[0]
    try:
        address = dns.reversename.to_address(question.name)
    except (dns.exception.DNSException, ValueError):
        return None
    target = table.reverse(asker, address)
    if target is None:
        return None
    reply = dns.message.make_response(query)
    reply.flags |= dns.flags.AA | dns.flags.RA
    try:
        ptr = PtrRecord(dns.rdataclass.IN, dns.rdatatype.PTR, dns.name.from_text(target))  # type: ignore[no-untyped-call]
    except dns.exception.DNSException:
        return None
    reply.answer.append(dns.rrset.from_rdata(question.name, TTL, ptr))
    return reply


def _local(
    query: dns.message.Message, table: NameTable, asker: str
) -> dns.message.Message | None:
    question = query.question[0]
    if question.rdtype == dns.rdatatype.PTR:
        return _reverse(query, table, asker)
    found = table.lookup(asker, question.name.to_text())
    if found is None:
        return None
    reply = dns.message.make_response(query)
    reply.flags |= dns.flags.AA | dns.flags.RA
    if question.rdtype == dns.rdatatype.A and found.addresses:
        rrset = dns.rrset.RRset(question.name, dns.rdataclass.IN, dns.rdatatype.A)
        for address in found.addresses:  # built directly: parsing rdata text is 5x slower
            record = ARecord(dns.rdataclass.IN, dns.rdatatype.A, address)  # type: ignore[no-untyped-call]
            rrset.add(record, TTL)
        reply.answer.append(rrset)
    return reply


async def answer(
    wire: bytes,
    table: NameTable,
    asker: str,
    forward: Forwarder | None,
    tcp: bool = False,
) -> bytes | None:
    """The response to send back for `wire` asked by task `asker`, or None to drop it."""
    try:
        query = dns.message.from_wire(wire)
    except (dns.exception.DNSException, ValueError):
        return _formerr(wire)
    if query.flags & dns.flags.QR:
        return None  # a response, not a query: never answer one (no reflection loops)
    limit = TCP_MAX if tcp else max(UDP_DEFAULT, query.payload if query.edns >= 0 else 0)
    if query.opcode() != dns.opcode.QUERY:
        reply = dns.message.make_response(query)
        reply.set_rcode(dns.rcode.NOTIMP)
        return _encode(reply, limit)
    if len(query.question) != 1 or query.question[0].rdclass != dns.rdataclass.IN:
        reply = dns.message.make_response(query)
        reply.set_rcode(dns.rcode.FORMERR if len(query.question) != 1 else dns.rcode.REFUSED)
        return _encode(reply, limit)
    local = _local(query, table, asker)
    if local is None:
        forwarded = await forward(query) if forward is not None else None
        if forwarded is None:
            local = dns.message.make_response(query)
            local.flags |= dns.flags.RA
            local.set_rcode(dns.rcode.REFUSED)
        else:
            forwarded.id = query.id
            local = forwarded
    return _encode(local, limit)

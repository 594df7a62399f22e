"""Gossip wire messages: what one node tells another over 7946/udp (packets) and /tcp
(push-pull state exchanges).

Values only (msgspec Structs, tagged, encoded as msgpack arrays to keep packets small). A
UDP `Packet` carries one or more messages: at most one probe message (ping, ping-req, ack,
nack) plus broadcasts piggybacked on it (alive/suspect/dead and endpoint records). Strings
and counters are bounded, so a decoded message is always of a sane size.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

__all__ = [
    "Ack",
    "Alive",
    "Dead",
    "EntryBody",
    "MemberState",
    "Message",
    "Nack",
    "NetBody",
    "Packet",
    "Ping",
    "PingReq",
    "PortBody",
    "PushPull",
    "Record",
    "Suspect",
    "encoded_size",
    "envelope_size",
]

NodeId = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
Addr = Annotated[str, msgspec.Meta(min_length=3, max_length=64)]  # "host:port"
Key = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
Counter = Annotated[int, msgspec.Meta(ge=0, le=2**62)]
Port = Annotated[int, msgspec.Meta(ge=0, le=65535)]


class Ping(msgspec.Struct, tag="ping", array_like=True, frozen=True):
    """Are you alive? `target` names the node meant, so a reused address cannot answer."""

    seq: Counter
    target: NodeId


class PingReq(msgspec.Struct, tag="preq", array_like=True, frozen=True):
    """Probe `target` for me and relay its ack; with `nack`, say so if it stays silent."""

    seq: Counter
    target: NodeId
    target_addr: Addr
    nack: bool


class Ack(msgspec.Struct, tag="ack", array_like=True, frozen=True):
    seq: Counter


class Nack(msgspec.Struct, tag="nack", array_like=True, frozen=True):
    """A relay did not hear the target: the prober's own network is probably fine."""

    seq: Counter


class Alive(msgspec.Struct, tag="alive", array_like=True, frozen=True):
    node: NodeId
    addr: Addr
    incarnation: Counter


class Suspect(msgspec.Struct, tag="suspect", array_like=True, frozen=True):
    node: NodeId
    incarnation: Counter
    origin: NodeId  # who suspects it (confirmations are counted per origin)


class Dead(msgspec.Struct, tag="dead", array_like=True, frozen=True):
    """`origin == node` means the node left on purpose."""

    node: NodeId
    incarnation: Counter
    origin: NodeId


class PortBody(msgspec.Struct, array_like=True, frozen=True):
    protocol: Literal["tcp", "udp"]
    published: Port
    target: Port
    mode: Literal["ingress", "host"]


Name = Annotated[str, msgspec.Meta(max_length=255)]  # a DNS name or alias


class NetBody(msgspec.Struct, array_like=True, frozen=True):
    """The task on one overlay network: its address there, its service's VIP there ("" in
    dnsrr mode) and the service's aliases on it (what the embedded DNS answers)."""

    network: Key
    address: Annotated[str, msgspec.Meta(max_length=64)]
    vip: Annotated[str, msgspec.Meta(max_length=64)] = ""
    aliases: Annotated[tuple[Name, ...], msgspec.Meta(max_length=16)] = ()
    prefix: Annotated[int, msgspec.Meta(ge=0, le=32)] = 0  # the network's prefix length
    gateway: Annotated[str, msgspec.Meta(max_length=64)] = ""  # the network's gateway
    name: Name = ""  # the network's name (PTR answers: TASK.NETWORK)
    internal: bool = False  # `--internal`: no route out for a task only on such networks


class EntryBody(msgspec.Struct, array_like=True, frozen=True):
    service_id: Key
    address: Annotated[str, msgspec.Meta(max_length=64)]
    ready: bool
    ports: tuple[PortBody, ...] = ()
    service_name: Name = ""
    networks: Annotated[tuple[NetBody, ...], msgspec.Meta(max_length=16)] = ()
    starting: bool = False  # not ready *yet* (not draining): never a mesh backend
    task_name: Name = ""  # SERVICE.SLOT.TASKID, what the embedded DNS answers for the task
    hostname: Name = ""  # the task's hostname (its own name in DNS)


class Record(msgspec.Struct, tag="rec", array_like=True, frozen=True):
    """One endpoint of `owner` (the node running task `key`); `body` None is a tombstone.

    Only the owner issues versions of its records; the highest version wins everywhere.
    """

    owner: NodeId
    key: Key
    version: Counter
    body: EntryBody | None


Message = Ping | PingReq | Ack | Nack | Alive | Suspect | Dead | Record


class Packet(msgspec.Struct, array_like=True, frozen=True):
    source: NodeId
    source_addr: Addr
    messages: list[Message]


class MemberState(msgspec.Struct, array_like=True, frozen=True):
    node: NodeId
    addr: Addr
    incarnation: Counter
    status: Literal["alive", "suspect", "dead", "left"]


class PushPull(msgspec.Struct, array_like=True, frozen=True):
    """A node's whole state, exchanged both ways over TCP (anti-entropy, and joins)."""

    source: NodeId
    source_addr: Addr
    join: bool
    members: list[MemberState]
    records: list[Record]


_size_encoder = msgspec.msgpack.Encoder()


def encoded_size(msg: Message) -> int:
    """Bytes `msg` takes inside a packet's message list."""
    return len(_size_encoder.encode(msg))


def envelope_size(source: str, source_addr: str) -> int:
    """Bytes of a packet from `source`, its message list aside."""
    return len(_size_encoder.encode(Packet(source, source_addr, [])))

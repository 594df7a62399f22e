"""Raft's data types and their msgpack codec.

Everything here is an immutable msgspec Struct, encoded as a msgpack array (field order is
the wire format: append new fields at the end, with defaults). Node IDs are non-zero ints;
`NONE` (0) means "no node". Index 0 / term 0 mean "before the first entry".

`decode`/`decode_message` are the only way bytes from the network or the disk become Raft
values: they enforce a size limit and structural rules, and turn every failure into
`MessageDecodeError` (never another exception), so a hostile peer cannot crash a node.
"""

from __future__ import annotations

import enum
import hashlib
from typing import Annotated, Final, TypeVar

import msgspec

from shoal.raft.errors import MessageDecodeError

__all__ = [
    "DEFAULT_MAX_DECODE_BYTES",
    "LOCAL_MESSAGES",
    "NONE",
    "RESPONSE_MESSAGES",
    "ConfChange",
    "ConfChangeType",
    "ConfState",
    "Entry",
    "EntryType",
    "HardState",
    "Message",
    "MessageType",
    "Snapshot",
    "SnapshotMetadata",
    "decode",
    "decode_message",
    "encode",
    "encode_message",
    "raft_id",
]

NONE: Final = 0
DEFAULT_MAX_DECODE_BYTES: Final = 64 << 20

_U63 = Annotated[int, msgspec.Meta(ge=0, le=(1 << 63) - 1)]


class EntryType(enum.IntEnum):
    NORMAL = 0
    CONF_CHANGE = 1


class MessageType(enum.IntEnum):
    """Message kinds. Local ones are stepped by the node itself, never sent on the wire."""

    HUP = 0  # local: start an election
    BEAT = 1  # local: leader sends heartbeats
    PROP = 2  # proposal; a follower forwards it to the leader
    APP = 3  # append entries: index/log_term of the entry before `entries`
    APP_RESP = 4  # index = last index matched, or the rejected index (reject=True)
    VOTE = 5
    VOTE_RESP = 6
    SNAP = 7  # install snapshot
    HEARTBEAT = 8
    HEARTBEAT_RESP = 9
    UNREACHABLE = 10  # local: the transport could not reach `from_`
    SNAP_STATUS = 11  # local: snapshot to `from_` delivered (reject=False) or failed
    CHECK_QUORUM = 12  # local: leader checks it heard from a quorum
    TRANSFER_LEADER = 13  # `from_` is the transferee; a follower forwards it to the leader
    TIMEOUT_NOW = 14  # leader tells the transferee to campaign at once
    READ_INDEX = 15  # linearizable read request; `context` identifies it
    READ_INDEX_RESP = 16
    PRE_VOTE = 17
    PRE_VOTE_RESP = 18


LOCAL_MESSAGES: Final = frozenset(
    {
        MessageType.HUP,
        MessageType.BEAT,
        MessageType.UNREACHABLE,
        MessageType.SNAP_STATUS,
        MessageType.CHECK_QUORUM,
    }
)
RESPONSE_MESSAGES: Final = frozenset(
    {
        MessageType.APP_RESP,
        MessageType.VOTE_RESP,
        MessageType.HEARTBEAT_RESP,
        MessageType.UNREACHABLE,
        MessageType.SNAP_STATUS,
        MessageType.PRE_VOTE_RESP,
    }
)


class Entry(msgspec.Struct, frozen=True, array_like=True, gc=False):
    term: _U63
    index: _U63
    type: EntryType = EntryType.NORMAL
    data: bytes = b""


class HardState(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """What must be durable before any message of the same Ready leaves the node."""

    term: _U63 = 0
    vote: _U63 = NONE
    commit: _U63 = 0


class ConfState(msgspec.Struct, frozen=True, array_like=True, gc=False):
    voters: tuple[_U63, ...] = ()
    learners: tuple[_U63, ...] = ()


class SnapshotMetadata(msgspec.Struct, frozen=True, array_like=True, gc=False):
    index: _U63 = 0
    term: _U63 = 0
    conf_state: ConfState = ConfState()


class Snapshot(msgspec.Struct, frozen=True, array_like=True, gc=False):
    metadata: SnapshotMetadata = SnapshotMetadata()
    data: bytes = b""

    @property
    def index(self) -> int:
        return self.metadata.index

    @property
    def term(self) -> int:
        return self.metadata.term

    @property
    def is_empty(self) -> bool:
        return self.metadata.index == 0


class ConfChangeType(enum.IntEnum):
    ADD_NODE = 0  # add a voter, or promote a learner
    ADD_LEARNER = 1  # add a non-voting member (refused for a current voter)
    REMOVE_NODE = 2


class ConfChange(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """A single-server membership change; `context` is opaque to Raft (e.g. an address)."""

    type: ConfChangeType
    node_id: Annotated[int, msgspec.Meta(ge=1, le=(1 << 63) - 1)]
    context: bytes = b""


class Message(msgspec.Struct, frozen=True, array_like=True, gc=False):
    type: MessageType
    from_: _U63
    to: _U63
    term: _U63 = 0
    log_term: _U63 = 0
    index: _U63 = 0
    entries: tuple[Entry, ...] = ()
    commit: _U63 = 0
    reject: bool = False
    reject_hint: _U63 = 0
    snapshot: Snapshot | None = None
    context: bytes = b""


_T = TypeVar("_T", Message, Entry, HardState, Snapshot, ConfChange, ConfState)

_encoder = msgspec.msgpack.Encoder()
_decoders: dict[type, msgspec.msgpack.Decoder[object]] = {}


def encode(obj: Message | Entry | HardState | Snapshot | ConfChange | ConfState) -> bytes:
    return _encoder.encode(obj)


def decode(data: bytes, kind: type[_T], *, max_size: int = DEFAULT_MAX_DECODE_BYTES) -> _T:
    """Decode `data` as a `kind`; any failure raises MessageDecodeError."""
    if len(data) > max_size:
        raise MessageDecodeError(f"{kind.__name__}: {len(data)} bytes exceed the {max_size} limit")
    decoder = _decoders.get(kind)
    if decoder is None:
        decoder = _decoders[kind] = msgspec.msgpack.Decoder(kind)
    try:
        value = decoder.decode(data)
    except (msgspec.DecodeError, RecursionError, ValueError, TypeError) as exc:
        raise MessageDecodeError(f"{kind.__name__}: {exc}") from exc
    assert isinstance(value, kind)
    return value


def encode_message(m: Message) -> bytes:
    return _encoder.encode(m)


def decode_message(data: bytes, *, max_size: int = DEFAULT_MAX_DECODE_BYTES) -> Message:
    """Decode a message from the wire and check what its types cannot express."""
    m = decode(data, Message, max_size=max_size)
    if m.type in LOCAL_MESSAGES:
        raise MessageDecodeError(f"message: local type {m.type.name} is never sent on the wire")
    if m.from_ == NONE or m.to == NONE:
        raise MessageDecodeError("message: no sender or no recipient")
    expected = m.index + 1
    for e in m.entries:
        if m.type is MessageType.APP and (e.index != expected or e.term > m.term):
            raise MessageDecodeError(
                f"message: entries not contiguous after index {m.index} or past term {m.term}"
            )
        expected = e.index + 1
    return m


def raft_id(name: str) -> int:
    """A stable non-zero 63-bit Raft ID for a string node ID (swarm node IDs are strings)."""
    digest = hashlib.blake2b(name.encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "big") & ((1 << 63) - 1)) or 1

"""Messages on the wire: msgpack round trips, and garbage never gets further than a
MessageDecodeError."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shoal.raft import (
    ConfChange,
    ConfChangeType,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageDecodeError,
    MessageType,
    Snapshot,
    SnapshotMetadata,
    decode,
    decode_message,
    encode,
    encode_message,
    raft_id,
)
from shoal.raft.messages import LOCAL_MESSAGES

u63 = st.integers(0, (1 << 63) - 1)
ids = st.integers(1, (1 << 63) - 1)
conf_states = st.builds(ConfState, st.tuples(ids, ids), st.tuples(ids))
snapshots = st.builds(
    Snapshot, st.builds(SnapshotMetadata, u63, u63, conf_states), st.binary(max_size=64)
)
wire_types = st.sampled_from([t for t in MessageType if t not in LOCAL_MESSAGES])


@st.composite
def messages(draw: st.DrawFn) -> Message:
    t = draw(wire_types)
    term = draw(st.integers(1, 1 << 40))
    index = draw(st.integers(0, 1 << 40))
    n = draw(st.integers(0, 4))
    types = st.sampled_from(list(EntryType))
    ents = tuple(
        Entry(draw(st.integers(0, term)), index + 1 + i, draw(types), draw(st.binary(max_size=32)))
        for i in range(n)
    )
    return Message(
        t,
        draw(ids),
        draw(ids),
        term=term,
        log_term=draw(u63),
        index=index,
        entries=ents,
        commit=draw(u63),
        reject=draw(st.booleans()),
        reject_hint=draw(u63),
        snapshot=draw(st.none() | snapshots),
        context=draw(st.binary(max_size=16)),
    )


@settings(max_examples=200, deadline=None)
@given(messages())
def test_message_round_trip(m: Message) -> None:
    assert decode_message(encode_message(m)) == m


@settings(max_examples=50, deadline=None)
@given(st.builds(HardState, u63, u63, u63), snapshots)
def test_storage_types_round_trip(hs: HardState, snap: Snapshot) -> None:
    assert decode(encode(hs), HardState) == hs
    assert decode(encode(snap), Snapshot) == snap
    cc = ConfChange(ConfChangeType.ADD_LEARNER, 7, b"198.18.0.12:2377")
    assert decode(encode(cc), ConfChange) == cc


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_garbage_raises_only_decode_errors(data: bytes) -> None:
    try:
        decode_message(data)
    except MessageDecodeError:
        pass


@settings(max_examples=300, deadline=None)
@given(messages(), st.data())
def test_corrupted_messages_raise_only_decode_errors(m: Message, data: st.DataObject) -> None:
    raw = bytearray(encode_message(m))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(1, len(raw)))
    try:
        decode_message(bytes(raw[:cut]))
    except MessageDecodeError:
        pass


def test_deeply_nested_garbage() -> None:
    with pytest.raises(MessageDecodeError):
        decode_message(b"\x91" * 100_000)


def test_size_limit() -> None:
    m = Message(MessageType.APP, 1, 2, term=1, entries=(Entry(1, 1, data=b"x" * 1000),))
    raw = encode_message(m)
    assert decode_message(raw, max_size=len(raw)) == m
    with pytest.raises(MessageDecodeError, match="exceed"):
        decode_message(raw, max_size=len(raw) - 1)


@pytest.mark.parametrize(
    ("m", "why"),
    [
        (Message(MessageType.HUP, 1, 2), "local"),
        (Message(MessageType.APP, 0, 2, term=1), "sender"),
        (Message(MessageType.APP, 1, 0, term=1), "recipient"),
        (Message(MessageType.APP, 1, 2, term=1, index=5, entries=(Entry(1, 7),)), "contiguous"),
        (Message(MessageType.APP, 1, 2, term=1, index=5, entries=(Entry(2, 6),)), "contiguous"),
    ],
)
def test_inconsistent_messages_are_refused(m: Message, why: str) -> None:
    with pytest.raises(MessageDecodeError, match=why):
        decode_message(encode_message(m))


def test_wrong_types_are_refused_with_the_path() -> None:
    raw = encode(Entry(1, 1))
    with pytest.raises(MessageDecodeError, match=r"\$\["):
        decode(raw, Message)
    with pytest.raises(MessageDecodeError):
        decode(encode(ConfChange(ConfChangeType.ADD_NODE, 1))[:-1] + b"\xff", ConfChange)


def test_raft_id_is_stable_and_nonzero() -> None:
    assert raft_id("abc") == raft_id("abc")
    assert raft_id("abc") != raft_id("abd")
    assert all(0 < raft_id(str(i)) < (1 << 63) for i in range(1000))

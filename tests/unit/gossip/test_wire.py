"""The keyring (AES-GCM, rotation) and the codec: what is not sealed under a held key, or
does not decode to a bounded gossip message, is refused with one exception type."""

from __future__ import annotations

import logging
import os

import msgspec
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from shoal.errors import InvalidArgument
from shoal.gossip.codec import decode_packet, decode_push_pull, encode_packet
from shoal.gossip.crypto import OVERHEAD, Keyring
from shoal.gossip.errors import AuthenticationFailed, GossipPacketError, MalformedPacket
from shoal.gossip.messages import Alive, Packet, Ping, Record
from shoal.gossip.ratelimit import RateLimitedLog

K1, K2, K3 = (bytes([i]) * 32 for i in (1, 2, 3))


def test_seal_and_open_round_trip_with_fresh_nonces() -> None:
    ring = Keyring(K1)
    a, b = ring.seal(b"hello", b"udp"), ring.seal(b"hello", b"udp")
    assert a != b and len(a) == 5 + OVERHEAD
    assert ring.open(a, b"udp") == b"hello"


@pytest.mark.parametrize("mangle", [
    lambda f: f[:-1] + bytes([f[-1] ^ 1]),  # tag
    lambda f: f[:20] + bytes([f[20] ^ 1]) + f[21:],  # ciphertext
    lambda f: f[:6] + bytes([f[6] ^ 1]) + f[7:],  # nonce
    lambda f: f[:10],  # truncated
    lambda f: b"\x02" + f[1:],  # version
])
def test_any_change_to_a_frame_is_caught(mangle: object) -> None:
    ring = Keyring(K1)
    frame = ring.seal(b"x" * 40, b"udp")
    with pytest.raises(AuthenticationFailed):
        ring.open(mangle(frame), b"udp")  # type: ignore[operator]


def test_a_frame_cannot_cross_channels() -> None:
    ring = Keyring(K1)
    with pytest.raises(AuthenticationFailed):
        ring.open(ring.seal(b"x", b"udp"), b"tcp")


def test_a_wrong_key_is_refused() -> None:
    with pytest.raises(AuthenticationFailed):
        Keyring(K2).open(Keyring(K1).seal(b"x", b"udp"), b"udp")


def test_rotation_install_use_remove() -> None:
    old, new = Keyring(K1), Keyring(K1)
    new.install(K2)
    assert new.open(old.seal(b"a", b"t"), b"t") == b"a"  # installed: accepted
    new.use(K2)
    assert new.keys() == [K2, K1]
    assert new.open(old.seal(b"b", b"t"), b"t") == b"b"  # the old key still opens
    with pytest.raises(AuthenticationFailed):
        old.open(new.seal(b"c", b"t"), b"t")  # a node without K2 cannot read it
    old.install(K2)
    assert old.open(new.seal(b"c", b"t"), b"t") == b"c"
    new.remove(K1)
    with pytest.raises(AuthenticationFailed):
        new.open(old.seal(b"d", b"t"), b"t")
    with pytest.raises(InvalidArgument):
        new.remove(K2)  # the primary


@pytest.mark.parametrize("key", [b"", b"short", os.urandom(31)])
def test_bad_keys_are_refused(key: bytes) -> None:
    with pytest.raises(InvalidArgument):
        Keyring(key)
    with pytest.raises(InvalidArgument):
        Keyring(K1).use(K3)


def test_packets_round_trip() -> None:
    p = Packet("n1", "127.0.0.2:7946", [Ping(1, "n2"), Alive("n1", "127.0.0.2:7946", 3),
                                        Record("n1", "t", 2, None)])
    assert decode_packet(encode_packet(p)) == p


@pytest.mark.parametrize("data", [
    b"",
    b"\xc1",
    msgspec.msgpack.encode(["n1", "127.0.0.1:1", [["nope", 1]]]),  # unknown tag
    msgspec.msgpack.encode(["n1", "127.0.0.1:1", [["ping", -1, "n2"]]]),  # negative seq
    msgspec.msgpack.encode(["", "127.0.0.1:1", []]),  # empty node id
    msgspec.msgpack.encode(["n1" * 100, "127.0.0.1:1", []]),  # too long
    b"\x93\xa2\x80\x80\xa3a:1\x90",  # a string that is not UTF-8
])
def test_bad_packets_are_malformed(data: bytes) -> None:
    with pytest.raises(MalformedPacket):
        decode_packet(data)


def test_oversized_input_is_refused_before_decoding() -> None:
    with pytest.raises(MalformedPacket):
        decode_packet(b"\x00" * 70000)
    with pytest.raises(MalformedPacket):
        decode_push_pull(b"\x90" * 11, max_size=10)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
@example(b"\x93\xa2\x80\x80\xa3a:1\x90")
def test_random_bytes_never_escape_as_anything_but_packet_errors(data: bytes) -> None:
    try:
        decode_packet(data)
    except GossipPacketError:
        pass
    try:
        decode_push_pull(data)
    except GossipPacketError:
        pass
    try:
        Keyring(K1).open(data, b"udp")
    except GossipPacketError:
        pass


def test_the_drop_log_is_rate_limited(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    limited = RateLimitedLog(logging.getLogger("t"), interval=10, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING):
        for _ in range(100):
            limited.warn("packet", "dropped")
        now[0] = 11
        limited.warn("packet", "dropped")
    assert [r.getMessage() for r in caplog.records] == [
        "dropped", "dropped (99 more like it suppressed)"
    ]
    assert limited.count == 101

"""msgpack encoding of gossip packets and push-pull states, with size limits.

Decoding validates types and bounds (see `messages.py`) and turns every failure into
`MalformedPacket`, so a bad packet is one exception to drop, never a crash.
"""

from __future__ import annotations

import msgspec

from shoal.gossip.errors import MalformedPacket
from shoal.gossip.messages import Packet, PushPull

__all__ = [
    "MAX_STREAM",
    "decode_packet",
    "decode_push_pull",
    "encode_packet",
    "encode_push_pull",
]

MAX_STREAM = 32 * 1024 * 1024  # a push-pull state: ~150 bytes per endpoint, 200k endpoints

_encoder = msgspec.msgpack.Encoder()
_packet_decoder = msgspec.msgpack.Decoder(Packet)
_push_pull_decoder = msgspec.msgpack.Decoder(PushPull)


def encode_packet(packet: Packet) -> bytes:
    return _encoder.encode(packet)


def decode_packet(data: bytes, max_size: int = 65507) -> Packet:
    if len(data) > max_size:
        raise MalformedPacket(f"gossip packet of {len(data)} bytes exceeds {max_size}")
    try:
        return _packet_decoder.decode(data)
    except (msgspec.DecodeError, ValueError) as exc:  # bad UTF-8 is a UnicodeDecodeError
        raise MalformedPacket(f"undecodable gossip packet: {exc}") from exc


def encode_push_pull(state: PushPull) -> bytes:
    return _encoder.encode(state)


def decode_push_pull(data: bytes, max_size: int = MAX_STREAM) -> PushPull:
    if len(data) > max_size:
        raise MalformedPacket(f"push-pull state of {len(data)} bytes exceeds {max_size}")
    try:
        return _push_pull_decoder.decode(data)
    except (msgspec.DecodeError, ValueError) as exc:
        raise MalformedPacket(f"undecodable push-pull state: {exc}") from exc

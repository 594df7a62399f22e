"""The simulation's replicated state machine: a key-value map with client sessions.

Sessions (client -> last applied sequence number) make a put apply at most once even if
its proposal is duplicated by the network or re-proposed (thesis §6.3), which is what
lets a client's put be linearizable.
"""

from __future__ import annotations

import msgspec

__all__ = ["KV", "Put"]


class Put(msgspec.Struct, frozen=True, array_like=True):
    client: int
    seq: int
    key: str
    value: int


class _Image(msgspec.Struct, array_like=True):
    data: dict[str, int]
    sessions: dict[int, int]


_put_decoder = msgspec.msgpack.Decoder(Put)
_batch_decoder = msgspec.msgpack.Decoder(list[Put])  # several puts in ONE entry (group commit)
_image_decoder = msgspec.msgpack.Decoder(_Image)


class KV:
    def __init__(self, data: dict[str, int] | None = None, sessions: dict[int, int] | None = None):
        self.data = data or {}
        self.sessions = sessions or {}

    @staticmethod
    def encode_put(p: Put) -> bytes:
        return msgspec.msgpack.encode(p)

    @staticmethod
    def encode_batch(puts: list[Put]) -> bytes:
        return msgspec.msgpack.encode(puts)

    @staticmethod
    def decode_puts(b: bytes) -> list[Put]:
        """The puts of an entry, in order: one put, or a batch (an array of puts)."""
        try:
            return [_put_decoder.decode(b)]
        except msgspec.ValidationError:
            return _batch_decoder.decode(b)

    def apply(self, p: Put) -> bool:
        """Apply a put; False if this client's op was already applied (a duplicate)."""
        if self.sessions.get(p.client, -1) >= p.seq:
            return False
        self.sessions[p.client] = p.seq
        self.data[p.key] = p.value
        return True

    def get(self, key: str) -> int | None:
        return self.data.get(key)

    def snapshot(self) -> bytes:
        return msgspec.msgpack.encode(_Image(self.data, self.sessions))

    @classmethod
    def restore(cls, b: bytes) -> KV:
        if not b:
            return cls()
        img = _image_decoder.decode(b)
        return cls(dict(img.data), dict(img.sessions))

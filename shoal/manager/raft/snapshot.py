"""The store's state as a Raft snapshot: `Store.snapshot()` encoded with msgpack.

Layout: a versioned array `[format, store_index, {kind: msgpack(list of objects)}]`; each
table is decoded with its kind's type from `KINDS`, so a kind this version does not know
is refused rather than dropped. `b""` is the empty initial state every founding member
bootstraps from.
"""

from __future__ import annotations

from typing import Any

import msgspec

from shoal.errors import InvalidArgument
from shoal.manager.state.changes import KINDS
from shoal.manager.state.store import Store

__all__ = ["decode_store", "encode_store", "load_store"]

_FORMAT = 1


class _Image(msgspec.Struct, array_like=True):
    format: int
    index: int
    tables: dict[str, bytes]


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(_Image)


def encode_store(store: Store) -> bytes:
    tables = {kind: _encoder.encode(objs) for kind, objs in store.snapshot().items()}
    return _encoder.encode(_Image(_FORMAT, store.index, tables))


def decode_store(data: bytes) -> tuple[dict[str, list[Any]], int]:
    """The objects per kind and the store index of a snapshot."""
    if not data:
        return {}, 0
    try:
        image = _decoder.decode(data)
        if image.format != _FORMAT:
            raise InvalidArgument(f"store snapshot: unknown format {image.format}")
        objects: dict[str, list[Any]] = {}
        for kind, raw in image.tables.items():
            if kind not in KINDS:
                raise InvalidArgument(f"store snapshot: unknown kind {kind!r}")
            typ: Any = list[KINDS[kind]]  # type: ignore[valid-type]
            objects[kind] = msgspec.msgpack.decode(raw, type=typ)
    except msgspec.DecodeError as exc:
        raise InvalidArgument(f"store snapshot: {exc}") from exc
    return objects, image.index


def load_store(store: Store, data: bytes) -> None:
    objects, index = decode_store(data)
    store.load(objects, index)

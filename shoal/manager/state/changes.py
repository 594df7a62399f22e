"""The unit the store replicates: a batch of object changes, encoded with msgpack.

A batch is what one `Store.update` transaction wrote. It carries the leader's timestamp so
every replica stamps objects identically when it applies the batch.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from shoal.api.types import Config, Network, Node, Secret, Service, Swarm, Task

__all__ = ["KINDS", "Batch", "Change", "Kind", "decode_batch", "encode_batch"]

Kind = Literal["service", "task", "node", "cluster", "network", "secret", "config"]
KINDS: dict[str, type[Any]] = {
    "service": Service,
    "task": Task,
    "node": Node,
    "cluster": Swarm,
    "network": Network,
    "secret": Secret,
    "config": Config,
}


class Change(msgspec.Struct, array_like=True):
    action: Literal["create", "update", "delete"]
    kind: str
    id: str
    data: bytes  # msgpack of the object (empty for delete)


class Batch(msgspec.Struct, array_like=True):
    timestamp: str
    changes: list[Change]


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Batch)


def encode_batch(batch: Batch) -> bytes:
    return _encoder.encode(batch)


def decode_batch(raw: bytes) -> Batch:
    return _decoder.decode(raw)

"""Typed views of one store table: `view.services.get(id) -> Service | None`.

The store keeps its tables keyed by kind name and hands out `Any`; these views bind a kind
to its `shoal.api.types` class so callers get typed objects. `Table` reads (over a
`ReadView` or a `Tx`); `TxTable` also writes (over a `Tx`). They add no behaviour: every
call is the store's own `get/list/find/create/update/delete` for that kind.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar

from shoal.api.types import Config, Network, Node, Secret, Service, Swarm, Task

__all__ = ["Table", "TxTable", "TypedReads", "TypedWrites"]

T = TypeVar("T")


class _Reads(Protocol):
    def get(self, kind: str, obj_id: str) -> Any | None: ...
    def list(self, kind: str) -> builtins.list[Any]: ...
    def find(self, kind: str, pred: Callable[[Any], bool]) -> builtins.list[Any]: ...


class _Writes(_Reads, Protocol):
    def create(self, kind: str, obj: Any) -> None: ...
    def update(self, kind: str, obj: Any) -> None: ...
    def delete(self, kind: str, obj_id: str) -> None: ...


class Table(Generic[T]):
    """Reads of one kind, typed as its API class."""

    def __init__(self, source: _Reads, kind: str, cls: type[T]) -> None:
        self._source = source
        self.kind = kind
        self.cls = cls

    def get(self, obj_id: str) -> T | None:
        obj: T | None = self._source.get(self.kind, obj_id)
        return obj

    def list(self) -> builtins.list[T]:
        objs: builtins.list[T] = self._source.list(self.kind)
        return objs

    def find(self, pred: Callable[[T], bool]) -> builtins.list[T]:
        objs: builtins.list[T] = self._source.find(self.kind, pred)
        return objs


class TxTable(Table[T]):
    """Reads and writes of one kind inside a transaction."""

    def __init__(self, source: _Writes, kind: str, cls: type[T]) -> None:
        super().__init__(source, kind, cls)
        self._writer = source

    def create(self, obj: T) -> None:
        self._writer.create(self.kind, obj)

    def update(self, obj: T) -> None:
        self._writer.update(self.kind, obj)

    def delete(self, obj_id: str) -> None:
        self._writer.delete(self.kind, obj_id)


class TypedReads:
    """Mixin for `ReadView`: one typed `Table` per kind."""

    @property
    def services(self: _Reads) -> Table[Service]:
        return Table(self, "service", Service)

    @property
    def tasks(self: _Reads) -> Table[Task]:
        return Table(self, "task", Task)

    @property
    def nodes(self: _Reads) -> Table[Node]:
        return Table(self, "node", Node)

    @property
    def clusters(self: _Reads) -> Table[Swarm]:
        return Table(self, "cluster", Swarm)

    @property
    def networks(self: _Reads) -> Table[Network]:
        return Table(self, "network", Network)

    @property
    def secrets(self: _Reads) -> Table[Secret]:
        return Table(self, "secret", Secret)

    @property
    def configs(self: _Reads) -> Table[Config]:
        return Table(self, "config", Config)


class TypedWrites:
    """Mixin for `Tx`: one typed `TxTable` per kind."""

    @property
    def services(self: _Writes) -> TxTable[Service]:
        return TxTable(self, "service", Service)

    @property
    def tasks(self: _Writes) -> TxTable[Task]:
        return TxTable(self, "task", Task)

    @property
    def nodes(self: _Writes) -> TxTable[Node]:
        return TxTable(self, "node", Node)

    @property
    def clusters(self: _Writes) -> TxTable[Swarm]:
        return TxTable(self, "cluster", Swarm)

    @property
    def networks(self: _Writes) -> TxTable[Network]:
        return TxTable(self, "network", Network)

    @property
    def secrets(self: _Writes) -> TxTable[Secret]:
        return TxTable(self, "secret", Secret)

    @property
    def configs(self: _Writes) -> TxTable[Config]:
        return TxTable(self, "config", Config)

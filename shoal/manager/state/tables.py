"""Typed views of one store table: `view.services.get(id) -> Service | None`.

The store keeps its tables keyed by kind name and hands out `Any`; these views bind a kind
to its `shoal.api.types` class so callers get typed objects. `Table` reads (over a
`ReadView` or a `Tx`); `TxTable` also writes (over a `Tx`). They add no behaviour: every
call is the store's own `get/list/find/create/update/delete` for that kind.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable
from typing import Any, ClassVar, Generic, Protocol, TypeVar, cast, overload

from shoal.api.types import Config, Network, Node, Secret, Service, Swarm, Task

__all__ = ["Table", "TxTable", "TypedTables"]

T = TypeVar("T")


class _Reads(Protocol):
    def get(self, kind: str, obj_id: str) -> Any | None: ...
    def list(self, kind: str) -> builtins.list[Any]: ...
    def find(self, kind: str, pred: Callable[[Any], bool]) -> builtins.list[Any]: ...
    def named(self, kind: str, name: str) -> builtins.list[Any]: ...


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

    def named(self, name: str) -> builtins.list[T]:
        """The objects whose `spec.name` is `name`, from the store's name index (kinds in
        `NAMED_KINDS`; a scan for the others): not O(table) per lookup as `find` is."""
        objs: builtins.list[T] = self._source.named(self.kind, name)
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


class _TableOf(Generic[T]):
    """Class attribute giving the typed table of one kind: a `TxTable` on a transaction,
    a read-only `Table` on a read view."""

    def __init__(self, kind: str, cls: type[T]) -> None:
        self.kind, self.cls = kind, cls

    @overload
    def __get__(self, obj: _Writes, owner: type[Any]) -> TxTable[T]: ...
    @overload
    def __get__(self, obj: _Reads, owner: type[Any]) -> Table[T]: ...
    def __get__(self, obj: _Reads, owner: type[Any]) -> Table[T]:
        # a class flag, not isinstance() of a runtime Protocol: that check walked the
        # protocol's members on every typed read (a fifth of a commit's watcher passes)
        if getattr(obj, "writable", False):
            return TxTable(cast(_Writes, obj), self.kind, self.cls)
        return Table(obj, self.kind, self.cls)


class TypedTables:
    """Mixin for `ReadView` and `Tx`: one typed table per kind (`TxTable`s where the class
    sets `writable`)."""

    writable: ClassVar[bool] = False

    services = _TableOf("service", Service)
    tasks = _TableOf("task", Task)
    nodes = _TableOf("node", Node)
    clusters = _TableOf("cluster", Swarm)
    networks = _TableOf("network", Network)
    secrets = _TableOf("secret", Secret)
    configs = _TableOf("config", Config)

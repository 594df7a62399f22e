"""Resolving a user's reference to an object: full ID, then exact name, then unique ID prefix."""

from __future__ import annotations

from typing import Any, TypeVar

from shoal.errors import Ambiguous, NotFound
from shoal.manager.state.tables import Table

__all__ = ["resolve"]

T = TypeVar("T")


def _name(kind: str, obj: Any) -> str:
    if kind == "node":
        return str(obj.spec.name or obj.description.hostname)
    if kind == "task":
        return str(obj.name)
    return str(obj.spec.name)


def resolve(table: Table[T], ref: str) -> T:
    """The object of `table` that `ref` names (`view.services`, `tx.nodes`, ...)."""
    kind = table.kind
    if not ref:
        raise NotFound(f"{kind} {ref} not found")
    obj = table.get(ref)
    if obj is not None:
        return obj
    by_name = table.find(lambda o: _name(kind, o) == ref)
    if kind == "node" and not by_name:
        by_name = table.find(lambda o: getattr(o, "description").hostname == ref)  # noqa: B009
    if len(by_name) == 1:
        return by_name[0]
    if len(by_name) > 1:
        raise Ambiguous(f"{kind} {ref} is ambiguous ({len(by_name)} matches found)")
    by_prefix = table.find(lambda o: str(getattr(o, "id")).startswith(ref))  # noqa: B009
    if len(by_prefix) == 1:
        return by_prefix[0]
    if len(by_prefix) > 1:
        raise Ambiguous(f"{kind} {ref} is ambiguous ({len(by_prefix)} matches found)")
    raise NotFound(f"{kind} {ref} not found")

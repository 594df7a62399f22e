"""Resolving a user's reference to an object: full ID, then exact name, then unique ID prefix."""

from __future__ import annotations

from typing import Any

from shoal.errors import Ambiguous, NotFound
from shoal.manager.state.store import ReadView, Tx

__all__ = ["resolve"]


def _name(kind: str, obj: Any) -> str:
    if kind == "node":
        return str(obj.spec.name or obj.description.hostname)
    if kind == "task":
        return str(obj.name)
    return str(obj.spec.name)


def resolve(view: ReadView | Tx, kind: str, ref: str) -> Any:
    if not ref:
        raise NotFound(f"{kind} {ref} not found")
    obj = view.get(kind, ref)
    if obj is not None:
        return obj
    by_name = view.find(kind, lambda o: _name(kind, o) == ref)
    if kind == "node" and not by_name:
        by_name = view.find(kind, lambda o: o.description.hostname == ref)
    if len(by_name) == 1:
        return by_name[0]
    if len(by_name) > 1:
        raise Ambiguous(f"{kind} {ref} is ambiguous ({len(by_name)} matches found)")
    by_prefix = view.find(kind, lambda o: o.id.startswith(ref))
    if len(by_prefix) == 1:
        return by_prefix[0]
    if len(by_prefix) > 1:
        raise Ambiguous(f"{kind} {ref} is ambiguous ({len(by_prefix)} matches found)")
    raise NotFound(f"{kind} {ref} not found")

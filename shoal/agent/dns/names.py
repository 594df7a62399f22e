"""Name -> addresses for one asking task, from a snapshot of network attachments. Pure.

An `Attachment` is one task on one network, as the endpoint table carries it: the task's
address there, its service's VIP there ("" in dnsrr mode), the service's name and the
aliases it has on that network (`--network name=N,alias=A`, stack short names).
Names are case-insensitive and may end with a dot. Only IPv4 A records exist here.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["TASKS_PREFIX", "Attachment", "Lookup", "NameTable"]

TASKS_PREFIX = "tasks."


@dataclass(frozen=True)
class Attachment:
    task_id: str
    service_id: str
    service_name: str
    network_id: str
    address: str  # the task's address on the network, without prefix length
    vip: str = ""  # the service's VIP on the network, without prefix length; "" = dnsrr
    aliases: tuple[str, ...] = ()
    ready: bool = True


@dataclass(frozen=True)
class Lookup:
    """A name the cluster owns: `addresses` may be empty (no ready task right now)."""

    addresses: tuple[str, ...]


def _norm(name: str) -> str:
    return name.rstrip(".").lower()


class NameTable:
    """Immutable index of the attachments by (network, name)."""

    def __init__(self, attachments: Iterable[Attachment]) -> None:
        self._by_name: dict[tuple[str, str], list[Attachment]] = defaultdict(list)
        self._by_task: dict[str, set[str]] = defaultdict(set)
        for a in attachments:
            self._by_task[a.task_id].add(a.network_id)
            for name in {_norm(a.service_name), *(_norm(x) for x in a.aliases)}:
                if name:
                    self._by_name[(a.network_id, name)].append(a)

    def networks_of(self, task_id: str) -> frozenset[str]:
        return frozenset(self._by_task.get(task_id, ()))

    def lookup(self, asker_task: str, qname: str) -> Lookup | None:
        """The answer for `qname` asked by `asker_task`; None when the name is not ours."""
        name = _norm(qname)
        tasks_form = name.startswith(TASKS_PREFIX)
        target = name[len(TASKS_PREFIX):] if tasks_form else name
        found: list[Attachment] = []
        for network in sorted(self.networks_of(asker_task)):
            found += self._by_name.get((network, target), [])
        if not found:
            return None
        if not tasks_form:
            vips = sorted({a.vip for a in found if a.vip}, key=_ip_key)
            if vips:
                return Lookup(tuple(vips))
        ready = sorted({a.address for a in found if a.ready and a.address}, key=_ip_key)
        return Lookup(tuple(ready))


def _ip_key(address: str) -> tuple[int, ...]:
    return tuple(int(part) for part in address.split("."))

"""Name -> addresses for one asking task, from a snapshot of network attachments. Pure.

An `Attachment` is one task on one network, as the endpoint table carries it: the task's
address there, its service's VIP there ("" in dnsrr mode), the service's name and the
aliases it has on that network (`--network name=N,alias=A`, stack short names), the task's
name (`SERVICE.SLOT.TASKID`) and hostname, the network's name.
Names are case-insensitive and may end with a dot. Only IPv4 A (and PTR) records exist.

What a task can look up (only on networks it is attached to, as libnetwork's resolver):
- `SERVICE` / an alias -> the VIP; in dnsrr mode the ready tasks' addresses;
- `tasks.SERVICE` / `tasks.ALIAS` -> the ready tasks' addresses;
- a task's name `SERVICE.SLOT.TASKID` -> that task's address (ready or not: it exists);
- its own hostname -> its own address on its networks (other tasks' hostnames are not
  names: many tasks share one, e.g. `--hostname {{.Service.Name}}`);
- PTR of a task's address -> `TASKNAME.NETWORK` (Docker's reverse answer).
Several addresses are returned in address order (the wire shuffles them, see `wire`).
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
    task_name: str = ""  # SERVICE.SLOT.TASKID
    hostname: str = ""
    network_name: str = ""


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
        self._by_task_name: dict[tuple[str, str], list[Attachment]] = defaultdict(list)
        self._by_address: dict[tuple[str, str], Attachment] = {}
        self._by_task: dict[str, list[Attachment]] = defaultdict(list)
        for a in attachments:
            self._by_task[a.task_id].append(a)
            for name in {_norm(a.service_name), *(_norm(x) for x in a.aliases)}:
                if name:
                    self._by_name[(a.network_id, name)].append(a)
            if a.task_name:
                self._by_task_name[(a.network_id, _norm(a.task_name))].append(a)
            if a.address:
                self._by_address[(a.network_id, a.address)] = a

    def networks_of(self, task_id: str) -> frozenset[str]:
        return frozenset(a.network_id for a in self._by_task.get(task_id, ()))

    def lookup(self, asker_task: str, qname: str) -> Lookup | None:
        """The answer for `qname` asked by `asker_task`; None when the name is not ours."""
        name = _norm(qname)
        tasks_form = name.startswith(TASKS_PREFIX)
        target = name[len(TASKS_PREFIX):] if tasks_form else name
        found: list[Attachment] = []
        networks = sorted(self.networks_of(asker_task))
        for network in networks:
            found += self._by_name.get((network, target), [])
        if not found:
            return None if tasks_form else self._task_or_self(asker_task, name, networks)
        if not tasks_form:
            vips = sorted({a.vip for a in found if a.vip}, key=_ip_key)
            if vips:
                return Lookup(tuple(vips))
        ready = sorted({a.address for a in found if a.ready and a.address}, key=_ip_key)
        return Lookup(tuple(ready))

    def _task_or_self(self, asker: str, name: str, networks: list[str]) -> Lookup | None:
        found = [a for n in networks for a in self._by_task_name.get((n, name), [])]
        if not found:
            found = [a for a in self._by_task.get(asker, ()) if a.hostname and
                     _norm(a.hostname) == name]
        if not found:
            return None
        return Lookup(tuple(sorted({a.address for a in found if a.address}, key=_ip_key)))

    def reverse(self, asker_task: str, address: str) -> str | None:
        """`TASKNAME.NETWORK` of the task at `address` on a network the asker is on."""
        for network in sorted(self.networks_of(asker_task)):
            a = self._by_address.get((network, address))
            if a is not None and a.task_name:
                return f"{a.task_name}.{a.network_name}" if a.network_name else a.task_name
        return None


def _ip_key(address: str) -> tuple[int, ...]:
    return tuple(int(part) for part in address.split("."))

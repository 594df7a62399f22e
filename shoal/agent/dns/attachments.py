"""A task's network attachments (as the managers wrote them) in the endpoint table's form."""

from __future__ import annotations

import ipaddress
from typing import Any

from shoal.agent.dns.names import Attachment
from shoal.api.netview import NetService
from shoal.api.types import Task
from shoal.gossip.endpoints import EndpointEntry, NetworkAddress

__all__ = ["network_addresses", "service_attachments", "table_attachments"]


def _host(value: Any) -> str:
    try:
        return str(ipaddress.IPv4Interface(str(value)).ip) if value else ""
    except ValueError:
        return ""


def _prefix(value: Any) -> int:
    try:
        return ipaddress.IPv4Interface(str(value)).network.prefixlen
    except ValueError:
        return 0


def _gateway(network: Any) -> str:
    try:
        configs = network["Spec"]["IPAM"]["Config"]
        return str(ipaddress.IPv4Address(str(configs[0]["Gateway"])))
    except (KeyError, IndexError, TypeError, ValueError):
        return ""


def _spec(network: Any) -> dict[str, Any]:
    spec = network.get("Spec") if isinstance(network, dict) else None
    return spec if isinstance(spec, dict) else {}


def network_addresses(task: Task) -> tuple[NetworkAddress, ...]:
    """(network, address, VIP, aliases, ...) of each overlay network the task is on."""
    out = []
    for item in task.networks_attachments or []:
        if not isinstance(item, dict):
            continue
        network = item.get("Network") or {}
        network_id = str(network.get("ID", "")) if isinstance(network, dict) else ""
        addresses = item.get("Addresses") or []
        address = _host(addresses[0]) if addresses else ""
        if not network_id or not address:
            continue
        aliases = tuple(str(a) for a in item.get("Aliases") or [] if a)[:16]
        out.append(NetworkAddress(
            network_id, address, _host(item.get("ServiceVIP")), aliases,
            _prefix(addresses[0]), _gateway(network), str(_spec(network).get("Name") or "")[:255],
            bool(_spec(network).get("Internal")),
        ))
    return tuple(out[:16])


def table_attachments(entries: list[EndpointEntry]) -> list[Attachment]:
    """The DNS name table's input from endpoint entries (see `names.Attachment`)."""
    return [
        Attachment(
            task_id=e.task_id,
            service_id=e.service_id,
            service_name=e.service_name,
            network_id=n.network_id,
            address=n.address,
            vip=n.vip,
            aliases=n.aliases,
            ready=e.ready,
            task_name=e.task_name,
            hostname=e.hostname,
            network_name=n.name,
        )
        for e in entries
        for n in e.networks
    ]


def service_attachments(records: tuple[NetService, ...]) -> list[Attachment]:
    """The managers' service records as task-less attachments: the name and aliases resolve
    to the VIP (dnsrr: to no address) before any task exists; `tasks.X` lists no one from
    them. Their task id is no task's, so they never ask and never answer as a task."""
    return [
        Attachment(task_id=f"service:{r.service_id}", service_id=r.service_id,
                   service_name=r.name, network_id=r.network_id, address="", vip=r.vip,
                   aliases=r.aliases, ready=False)
        for r in records
    ]

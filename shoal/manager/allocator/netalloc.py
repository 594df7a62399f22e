"""Network address allocation against the store: network subnets, service VIPs, task addresses.

The arithmetic lives in `shoal.manager.allocator.netipam` (pure); this module reads what a
transaction holds to know which subnets and addresses are taken. Nothing is kept outside
the store: an address is in use while a service's `Endpoint.VirtualIPs` or a live task's
`NetworksAttachments` names it, so removing the service or ending the task releases it.

Shapes, as swarm writes them:
- `Endpoint.VirtualIPs`: `[{"NetworkID": id, "Addr": "198.18.1.2/24"}]`, one per attached
  network in `vip` endpoint mode, none in `dnsrr` mode; kept across updates while the
  service stays attached to the network.
- `Task.NetworksAttachments`: `[{"Network": {"ID", "Spec": {"Name", ...}}, "Addresses":
  ["198.18.1.3/24"], "Aliases": [...], "ServiceVIP": "198.18.1.2/24"}]`, one per attached
  network (`ServiceVIP` is shoal's: the service's VIP, for the nodes' DNS and VIP rules).
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

import msgspec

from shoal.api.states import is_terminal
from shoal.api.types import IPAMConfig, Network, NetworkSpec, Service, ServiceSpec, Task
from shoal.errors import InvalidArgument
from shoal.manager.allocator.netipam import (
    allocate_address,
    allocate_network_subnet,
    check_overlap,
    default_gateway,
    in_use_hosts,
)
from shoal.manager.state.store import ReadView, Tx

__all__ = [
    "allocate_ipam",
    "check_aliases",
    "network_config",
    "service_attachments",
    "service_vips",
    "task_attachments",
    "tasks_on_network",
]

MIN_PREFIX = 29  # a subnet must hold at least a gateway, a VIP and a few tasks


def network_config(network: Network) -> IPAMConfig | None:
    """The network's (single) allocated IPAM config: subnet and gateway."""
    configs = (network.spec.ipam.config or []) if network.spec.ipam else []
    return configs[0] if configs else None


def allocate_ipam(tx: Tx, spec: NetworkSpec) -> NetworkSpec:
    """`spec` with its IPAM config complete: a subnet (given or allocated) and a gateway."""
    others = [c.subnet for n in tx.networks.list() if (c := network_config(n)) and c.subnet]
    ipam = spec.ipam
    assert ipam is not None  # validate_network_spec filled it
    configs = ipam.config or []
    if len(configs) > 1:
        raise InvalidArgument("shoal's overlay networks have one IPv4 subnet (one --subnet)")
    if configs and configs[0].subnet:
        conf = configs[0]
        net = ipaddress.IPv4Network(conf.subnet, strict=False)
        if str(net) != conf.subnet:
            raise InvalidArgument(f"invalid subnet {conf.subnet}: it should be {net}")
        if net.prefixlen > MIN_PREFIX:
            raise InvalidArgument(
                f"invalid subnet {conf.subnet}: a /{net.prefixlen} is too small for an "
                f"overlay network (at most /{MIN_PREFIX})"
            )
        check_overlap(conf.subnet, others)
    else:
        if configs and (configs[0].gateway or configs[0].ip_range):
            raise InvalidArgument("ipam configuration: --gateway and --ip-range need a --subnet")
        conf = IPAMConfig(subnet=allocate_network_subnet(others))
    if not conf.gateway:
        conf = msgspec.structs.replace(conf, gateway=default_gateway(conf.subnet))
    return msgspec.structs.replace(spec, ipam=msgspec.structs.replace(ipam, config=[conf]))


def _used(view: ReadView | Tx, network_id: str) -> set[ipaddress.IPv4Address]:
    addresses: list[str] = []
    for service in view.services.list():
        addresses += [
            str(v.get("Addr", "")) for v in service.endpoint.virtual_ips or []
            if isinstance(v, dict) and v.get("NetworkID") == network_id
        ]
    for task in view.tasks.list():
        if is_terminal(task.status.state):
            continue
        for attachment in task.networks_attachments or []:
            if _attachment_network(attachment) == network_id:
                addresses += [str(a) for a in attachment.get("Addresses") or []]
    return in_use_hosts(addresses)


def _attachment_network(attachment: Any) -> str:
    if not isinstance(attachment, dict):
        return ""
    network = attachment.get("Network") or {}
    return str(network.get("ID", "")) if isinstance(network, dict) else ""


def _allocate(view: ReadView | Tx, network: Network) -> str:
    conf = network_config(network)
    if conf is None or not conf.subnet:
        raise InvalidArgument(f"network {network.spec.name} has no subnet to allocate from")
    return allocate_address(conf.subnet, conf.gateway, _used(view, network.id), conf.ip_range)


def service_attachments(spec: ServiceSpec) -> list[tuple[str, list[str]]]:
    """(network ID, aliases) of every network the service is attached to."""
    items = [*(spec.task_template.networks or []), *(spec.networks or [])]
    return [(item.target, list(item.aliases or [])) for item in items]


_LABEL = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?$")


def check_aliases(tx: Tx, service_id: str, spec: ServiceSpec) -> None:
    """Aliases are DNS names; on one network an alias may not be another service's name,
    nor the service's name another's alias (services may share an alias, as stacks sharing
    a network do: the name then answers every VIP)."""
    names: dict[tuple[str, str], str] = {}
    aliases: dict[tuple[str, str], str] = {}
    for other in tx.services.list():
        if other.id == service_id:
            continue
        for network_id, other_aliases in service_attachments(other.spec):
            names[(network_id, other.spec.name.lower())] = other.spec.name
            for alias in other_aliases:
                aliases[(network_id, alias.lower())] = other.spec.name
    for network_id, mine in service_attachments(spec):
        for alias in mine:
            if len(alias) > 253 or not all(_LABEL.match(p) for p in alias.split(".")):
                raise InvalidArgument(f"invalid network alias {alias!r}: not a DNS name")
        clashes = [names.get((network_id, a.lower())) for a in mine]
        clashes.append(aliases.get((network_id, spec.name.lower())))
        holder = next((c for c in clashes if c), None)
        if holder is not None:
            raise InvalidArgument(
                "rpc error: code = InvalidArgument desc = a name of this service is already "
                f"used by service '{holder}' on network {network_id}"
            )


def service_vips(tx: Tx, service: Service, spec: ServiceSpec) -> list[dict[str, str]] | None:
    """One VIP per attached network (`vip` mode): kept when the service already had one."""
    mode = spec.endpoint_spec.mode if spec.endpoint_spec else ""
    if mode == "dnsrr":
        return None
    current = {
        str(v.get("NetworkID")): str(v.get("Addr"))
        for v in service.endpoint.virtual_ips or [] if isinstance(v, dict)
    }
    out = []
    for network_id, _aliases in service_attachments(spec):
        network = tx.networks.get(network_id)
        if network is None or network_config(network) is None:
            continue  # gone, or made before networks had subnets: no address to give
        addr = current.get(network_id) or _allocate(tx, network)
        out.append({"NetworkID": network_id, "Addr": addr})
    return out or None


def task_attachments(tx: Tx, service: Service) -> list[dict[str, Any]] | None:
    """A new task's attachments: an address on each of the service's networks, and (shoal's
    `ServiceVIP`) the service's VIP there, which the node's DNS and VIP rules need."""
    out: list[dict[str, Any]] = []
    vips = {
        str(v.get("NetworkID")): str(v.get("Addr"))
        for v in service.endpoint.virtual_ips or [] if isinstance(v, dict)
    }
    for network_id, aliases in service_attachments(service.spec):
        network = tx.networks.get(network_id)
        if network is None or network_config(network) is None:
            continue
        attachment: dict[str, Any] = {
            "Network": {"ID": network.id, "Spec": msgspec.to_builtins(network.spec)},
            "Addresses": [_allocate(tx, network)],
        }
        if aliases:
            attachment["Aliases"] = aliases
        if network_id in vips:
            attachment["ServiceVIP"] = vips[network_id]
        out.append(attachment)
    return out or None


def tasks_on_network(view: ReadView | Tx, network_id: str) -> list[Task]:
    """Tasks meant to run and not ended that hold an address on the network (what makes
    swarmkit refuse `network rm`). A removed service's tasks do not count: they are going,
    and `docker stack rm` removes the networks right after the services."""
    return [
        t for t in view.tasks.list()
        if not is_terminal(t.status.state) and not is_terminal(t.desired_state)
        and view.services.get(t.service_id) is not None
        and any(_attachment_network(a) == network_id for a in t.networks_attachments or [])
    ]

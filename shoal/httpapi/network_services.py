"""`docker network inspect [--verbose] NET` for a user overlay network: `Containers`, this
node's tasks on it with their addresses (from the endpoint table, as Docker lists the local
containers), and with --verbose `Services`, each attached service's VIP and its live tasks'
addresses on the network (from the store)."""

from __future__ import annotations

from typing import Any

from shoal.api.states import is_terminal
from shoal.api.types import Network, Task
from shoal.gossip.endpoints import EndpointEntry
from shoal.manager.state.store import ReadView

__all__ = ["network_containers", "network_services"]


def network_containers(
    entries: list[EndpointEntry], node_id: str, network_id: str
) -> dict[str, Any]:
    """Docker's `Containers` of a network: this node's tasks on it, by container (task) ID."""
    out: dict[str, Any] = {}
    for e in entries:
        if e.node_id != node_id:
            continue
        for n in e.networks:
            if n.network_id == network_id:
                out[e.task_id] = {
                    "Name": e.task_name or e.task_id,
                    "EndpointID": e.task_id,
                    "MacAddress": "",
                    "IPv4Address": f"{n.address}/{n.prefix}" if n.prefix else n.address,
                    "IPv6Address": "",
                }
    return out


def _address_on(task: Task, network_id: str) -> str:
    for item in task.networks_attachments or []:
        if isinstance(item, dict) and (item.get("Network") or {}).get("ID") == network_id:
            addresses = item.get("Addresses") or []
            return str(addresses[0]).split("/")[0] if addresses else ""
    return ""


def network_services(view: ReadView, network: Network) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for service in sorted(view.services.list(), key=lambda s: s.spec.name):
        vip = next((str(v.get("Addr", "")).split("/")[0]
                    for v in service.endpoint.virtual_ips or []
                    if isinstance(v, dict) and v.get("NetworkID") == network.id), "")
        tasks = []
        for task in sorted(view.tasks.list(), key=lambda t: (t.slot, t.id)):
            if task.service_id != service.id or is_terminal(task.status.state):
                continue
            address = _address_on(task, network.id)
            if address:
                name = f"{service.spec.name}.{task.slot or task.node_id}.{task.id}"
                tasks.append({"Name": name, "EndpointID": task.id, "EndpointIP": address,
                              "Info": {"Host IP": task.node_id}})
        if vip or tasks:
            out[service.spec.name] = {"VIP": vip, "Ports": [], "LocalLBIndex": 0, "Tasks": tasks}
    return out

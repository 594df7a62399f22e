"""PURE: the per-service traffic policy of the mesh, read from service labels, and what a
node's health port answers.

    shoal.mesh.traffic-policy=cluster|local   (default cluster)
    shoal.mesh.health-port=<1-65535>          (optional; only with local)
    shoal.mesh.proxy-protocol=8080,53/udp     (PROXY v2 to the task; userspace mesh only)

`cluster` (Docker's mesh): every node balances a published port over the service's ready
tasks on all nodes, masquerading traffic sent to another node. `local` (Kubernetes'
externalTrafficPolicy=Local): a node balances only over its own ready tasks, so clients
keep their address (no SNAT, ever), and a node without one refuses the connection (TCP
reset / ICMP unreachable). An external load balancer learns where tasks are from the
health port, which every node serves: 200 while it has a ready local task, else 503.

Labels are read two ways: strictly at `service create/update` (`mesh_labels(...).problems`
become an InvalidArgument there) and leniently by the mesh (a bad value falls back to the
default: a label must never stop the mesh from being programmed). No I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from shoal.mesh.model import MeshState

__all__ = [
    "CLUSTER",
    "HEALTH_PORT_LABEL",
    "LOCAL",
    "PROXY_PROTOCOL_LABEL",
    "TRAFFIC_POLICY_LABEL",
    "HealthTarget",
    "MeshLabels",
    "Policy",
    "health_body",
    "health_targets",
    "mesh_labels",
    "proxy_protocol_ports",
]

TRAFFIC_POLICY_LABEL = "shoal.mesh.traffic-policy"
# published ports that get a PROXY v2 header (userspace mesh), e.g. "8080" or "8080/tcp,53/udp"
PROXY_PROTOCOL_LABEL = "shoal.mesh.proxy-protocol"
HEALTH_PORT_LABEL = "shoal.mesh.health-port"
Policy = Literal["cluster", "local"]
CLUSTER: Policy = "cluster"
LOCAL: Policy = "local"


@dataclass(frozen=True)
class MeshLabels:
    """What a service's labels ask of the mesh; `problems` say which labels were bad."""

    policy: Policy = CLUSTER
    health_port: int = 0  # 0: none
    problems: tuple[str, ...] = ()


def mesh_labels(labels: Mapping[str, str] | None) -> MeshLabels:
    """The traffic policy and health port of a service's labels, bad values reported."""
    labels = labels or {}
    problems: list[str] = []
    policy: Policy = CLUSTER
    raw_policy = labels.get(TRAFFIC_POLICY_LABEL)
    if raw_policy is not None:
        value = raw_policy.strip().lower()
        if value in (CLUSTER, LOCAL):
            policy = LOCAL if value == LOCAL else CLUSTER
        else:
            problems.append(
                f'label {TRAFFIC_POLICY_LABEL}: invalid value "{raw_policy}": '
                f'use "{CLUSTER}" or "{LOCAL}"'
            )
    health = 0
    raw_health = labels.get(HEALTH_PORT_LABEL)
    if raw_health is not None:
        text = raw_health.strip()
        if text.isascii() and text.isdigit() and 0 < int(text) < 65536:
            health = int(text)
        else:
            problems.append(
                f'label {HEALTH_PORT_LABEL}: invalid value "{raw_health}": '
                "use a port number between 1 and 65535"
            )
    if health and policy != LOCAL and not problems:  # (a bad policy is reported already)
        problems.append(
            f"label {HEALTH_PORT_LABEL} needs {TRAFFIC_POLICY_LABEL}={LOCAL} (with the "
            f"{CLUSTER} policy every node serves every port)"
        )
    if policy != LOCAL:
        health = 0  # what the mesh does with a health port it was given by mistake
    return MeshLabels(policy, health, tuple(problems))


@dataclass(frozen=True)
class HealthTarget:
    """What one health port of this node reports."""

    port: int
    service_id: str
    service_name: str
    local_endpoints: int  # ready tasks of the service on this node

    @property
    def status(self) -> int:
        return 200 if self.local_endpoints > 0 else 503


def health_targets(state: MeshState) -> tuple[dict[int, HealthTarget], tuple[str, ...]]:
    """The health ports `state` asks this node to serve, by port, and what was skipped.

    A health port comes with the published ports of a `local` service (every port of the
    service carries it). Two services naming one health port (the control API refuses
    it): the lowest service ID keeps it, like published ports.
    """
    owners: dict[int, tuple[str, str]] = {}
    problems: list[str] = []
    for port in sorted(state.ports, key=lambda p: (p.health_port, p.service_id)):
        if not port.health_port or port.policy != LOCAL or not 0 < port.health_port < 65536:
            continue
        owner = owners.get(port.health_port)
        if owner is None:
            owners[port.health_port] = (port.service_id, port.service_name or port.service_id)
        elif owner[0] != port.service_id:
            problem = (f"service {port.service_id}: health port {port.health_port} is already "
                       f"served for service {owner[0]}; skipped")
            if problem not in problems:
                problems.append(problem)
    local: dict[str, set[str]] = {}
    for ep in state.endpoints:
        if ep.ready and ep.node_id == state.node_id:
            local.setdefault(ep.service_id, set()).add(ep.task_id)
    targets = {
        number: HealthTarget(number, sid, name, len(local.get(sid, ())))
        for number, (sid, name) in owners.items()
    }
    return targets, tuple(problems)


def health_body(target: HealthTarget) -> dict[str, object]:
    """The JSON a health port answers (kube-proxy's health check node port, flattened)."""
    return {"service": target.service_name, "localEndpoints": target.local_endpoints}


def proxy_protocol_ports(
    labels: Mapping[str, str] | None,
) -> tuple[set[tuple[str, int]], list[str]]:
    """Ports named by the `shoal.mesh.proxy-protocol` label of a service, and bad items.

    "8080" names tcp and udp 8080; "8080/tcp" or "53/udp" one of them; items are separated
    by commas or spaces. Bad items are returned (for the caller to report), not raised: a
    label must never stop the mesh from being programmed.
    """
    value = (labels or {}).get(PROXY_PROTOCOL_LABEL, "")
    ports: set[tuple[str, int]] = set()
    bad: list[str] = []
    for item in value.replace(",", " ").split():
        number, _, proto = item.partition("/")
        protocols = (proto.lower(),) if proto else ("tcp", "udp")
        if not number.isdigit() or not 0 < int(number) < 65536 or \
                not set(protocols) <= {"tcp", "udp"}:
            bad.append(item)
            continue
        ports |= {(p, int(number)) for p in protocols}
    return ports, bad

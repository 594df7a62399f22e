"""Mesh states the planner tests share."""

from __future__ import annotations

from shoal.mesh.model import Endpoint, MeshState, PortSpec

SUBNET = "198.19.1.0/24"


def many_services(services: int, moved: str = "") -> MeshState:
    """`services` published services (s0.., tcp 20000+i) of 3 endpoints each on node n2;
    the endpoint named `moved` (e.g. "t7.1") has another address."""
    ports = tuple(PortSpec(f"s{i}", "tcp", 20000 + i, 80, "ingress") for i in range(services))
    eps = tuple(
        Endpoint(f"s{i}", f"t{i}.{k}", "n2", f"198.19.{i}.{k + 2}" if moved != f"t{i}.{k}"
                 else "198.19.250.250", True)
        for i in range(services) for k in range(3)
    )
    return MeshState("n1", SUBNET, ports, eps)

"""What every host runs whatever its role: the data plane, the node network, the agent.

`HostParts` builds them for one role's run (the node rebuilds them when its role
changes; the tasks, the endpoint table and the mesh's kernel rules carry over): the data
plane (`make_plane`), the `NodeNetwork` (mesh sync, overlay, gossip) fed by the role's
published ports and network view, and the `Agent` over the role's `AgentSession`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from shoal.agent.agent import Agent, gateway_of
from shoal.agent.controller import NodeContext
from shoal.agent.exec.runtime import ExecRuntime
from shoal.agent.health import netns_checker
from shoal.agent.ipam import SubnetAllocator
from shoal.agent.oci.health import container_checker
from shoal.agent.oci.runtime import OciRuntime, decode_auth_json
from shoal.agent.taskenv import task_env
from shoal.api.session import AgentSession
from shoal.api.types import Task
from shoal.errors import NotSupported
from shoal.gossip.node import GossipOptions
from shoal.gossip.table import EndpointTable
from shoal.images import ImageStore
from shoal.mesh.dataplane import DataPlane
from shoal.node.membership import Membership
from shoal.node.mesh_sync import PortSource
from shoal.node.network import NetSource, NodeNetwork, OverlayFactory
from shoal.node.options import DaemonOptions
from shoal.node.service_networks import attach as attach_service_networks

__all__ = ["HostParts", "make_plane"]

HealthCheck = Callable[[Task, list[str], float], Awaitable[bool]]


def make_plane(mesh: str, factory: Callable[[], DataPlane] | None = None) -> DataPlane:
    """The data plane of `--mesh` (kernel: nftables; userspace: proxies)."""
    if factory is not None:
        return factory()
    if mesh == "kernel":
        from shoal.mesh.kernel import KernelDataPlane

        return KernelDataPlane()
    if mesh == "userspace":
        from shoal.mesh.userspace import UserspaceDataPlane

        return UserspaceDataPlane()
    raise NotSupported(f"mesh mode {mesh!r} is not available yet (use kernel)")


def gossip_options(listen: str, swarm: Membership) -> GossipOptions:
    """Gossip on `listen` ("" is 0.0.0.0:7946), advertised at the node's address."""
    host, _, port = listen.rpartition(":")
    return GossipOptions(
        node_id=swarm.node_id,
        bind_host=host or "0.0.0.0",
        port=int(port) if port else 7946,
        advertise_host=host if host not in ("", "0.0.0.0") else swarm.addr,
    )


@dataclass
class HostParts:
    """The host's fixed pieces and fakes (tests), from which each run's parts are made."""

    opts: DaemonOptions
    hostname: str
    runtime: ExecRuntime
    images: ImageStore
    probe: Callable[[str, list[int]], Awaitable[None]]
    check_health: HealthCheck | None
    plane_factory: Callable[[], DataPlane] | None
    overlay_factory: OverlayFactory | None

    async def bind_network(
        self, swarm: Membership, endpoints: EndpointTable, ports: PortSource, net: NetSource
    ) -> NodeNetwork:
        """The node's mesh, overlay and gossip, gossip already bound (its address known)."""
        await self.runtime.ensure_node_network(gateway_of(swarm.subnet))
        network = NodeNetwork(
            node_id=swarm.node_id,
            addr=swarm.addr,
            subnet=swarm.subnet,
            endpoints=endpoints,
            plane=make_plane(self.opts.mesh, self.plane_factory),
            ports=ports,
            net=net,
            gossip=gossip_options(self.opts.gossip_listen, swarm),
            overlay_factory=self.overlay_factory,
            reconcile_every=self.opts.reconcile_every,
        )
        attach_service_networks(network, self.runtime)  # embedded DNS, service networks
        await network.bind()
        return network

    def agent(self, swarm: Membership, endpoints: EndpointTable, session: AgentSession) -> Agent:
        gateway = gateway_of(swarm.subnet)
        ctx = NodeContext(
            node_id=swarm.node_id,
            hostname=self.hostname,
            gateway=gateway,
            runtime=self.runtime,
            ipam=SubnetAllocator(ipaddress.IPv4Network(swarm.subnet), [gateway.ip]),
            endpoints=endpoints,
            report=lambda update: None,
            drain_delay=self.opts.drain_delay,
            probe=self.probe,
            check_health=self.check_health or self._default_health(),
            images=self.images,
        )
        held = getattr(session, "secrets", None)  # the session's AssignedSecrets
        if isinstance(self.runtime, OciRuntime) and held is not None:
            self.runtime.secret_source = held
            ctx.registry_auth = lambda service_id: decode_auth_json(held.registry_auth(service_id))
        return Agent(ctx, session)

    def _default_health(self) -> HealthCheck:
        runtime = self.runtime
        return container_checker(
            runtime,
            netns_checker(
                lambda task_id: str(runtime.netns_dir / runtime.netns_name(task_id)),
                lambda task: task_env(task, self.hostname),
            ),
        )

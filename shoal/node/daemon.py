"""`shoal daemon`: one node — the API, and once in a swarm the manager, agent and mesh.

A node is a manager (the store, reconcilers, the 2377 services; its own agent talks to the
store in-process) or a worker (no store: its agent has a session with a manager's
dispatcher over 2377, and the Docker API answers manager-only calls with Docker's 503).

State under the data root:
    swarm/node.json       membership: node ID, role, pool slice, address, managers' 2377
    swarm/raft.db         the store's Raft log and snapshots (SQLite; managers; see raft_role)
    certificates/         root CA (+ its key on managers), this node's certificate and key
    tasks/                the exec runtime's per-task state and logs
Stopping the daemon leaves tasks and the mesh's kernel rules in place: a restarted daemon
adopts the tasks and re-applies the mesh, and the mesh keeps serving in between.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import logging
import os
import random
import shutil
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from shoal import __version__
from shoal.agent.agent import Agent, gateway_of
from shoal.agent.controller import NodeContext, wait_listening
from shoal.agent.exec.runtime import ExecRuntime
from shoal.agent.health import netns_checker
from shoal.agent.ipam import SubnetAllocator
from shoal.agent.oci.health import container_checker
from shoal.agent.oci.runtime import OciRuntime, decode_auth_json
from shoal.agent.resources import host_resources
from shoal.agent.session_client import RemoteSession
from shoal.agent.taskenv import task_env
from shoal.api.session import AgentSession
from shoal.api.types import SwarmSpec, Task
from shoal.ca.certs import make_csr, new_key, sign_node_csr
from shoal.ca.files import NodeTLS, load_node_tls, load_root_ca, save_node_tls, save_root_ca
from shoal.ca.renewal import CertRenewer
from shoal.ca.root import RootCA
from shoal.cluster.forward import Forwarder
from shoal.errors import NotSupported, ShoalError, Unavailable
from shoal.gossip.node import GossipOptions
from shoal.gossip.table import EndpointTable
from shoal.images import ImageStore
from shoal.manager.controlapi.swarm import InitOptions, init_swarm, node_cert_expiry
from shoal.manager.state.store import Store, new_id
from shoal.mesh.dataplane import DataPlane
from shoal.node.addresses import advertise_address
from shoal.node.cluster_services import ClusterServices, split_listen_addr
from shoal.node.joining import join_swarm
from shoal.node.manager import Manager
from shoal.node.membership import Membership, load_membership, save_membership
from shoal.node.mesh_sync import PortFeed, PortSource, StorePorts
from shoal.node.network import (
    NetFeed,
    NetSource,
    NodeNetwork,
    OverlayFactory,
    StoreNet,
    real_overlay,
)
from shoal.node.raft_members import LeaderDuties
from shoal.node.raft_open import force_new_cluster
from shoal.node.raft_role import RaftRole, tick_interval
from shoal.node.raft_wiring import leave_refusal
from shoal.node.role_switch import RoleSwitch
from shoal.node.service_networks import attach as attach_service_networks

__all__ = ["Daemon", "DaemonOptions"]

log = logging.getLogger(__name__)

NOT_IN_SWARM = (
    'This node is not a swarm manager. Use "docker swarm init" or "docker swarm join" to '
    "connect this node to swarm and try again."
)
NOT_A_MANAGER = (
    "This node is not a swarm manager. Worker nodes can't be used to view or modify cluster "
    "state. Please run this command on a manager node or promote the current node to a "
    "manager."
)
ALREADY_IN_SWARM = (
    'This node is already part of a swarm. Use "docker swarm leave" to leave this swarm and '
    "join another one."
)


def _allowed_registries() -> list[str] | None:
    value = os.environ.get("SHOAL_ALLOWED_REGISTRIES")
    return None if value is None else [r for r in value.split(",") if r]


@dataclass
class DaemonOptions:
    data_root: Path = Path("/var/lib/shoal")
    hosts: list[str] = field(default_factory=list)
    hostname: str | None = None
    mesh: str = "kernel"
    debug: bool = False
    drain_delay: float = 2.0
    # where a manager listens for 2377 whatever `swarm init` asks (unit tests: loopback,
    # any port); "" follows the request's ListenAddr
    cluster_listen: str = field(
        default_factory=lambda: os.environ.get("SHOAL_CLUSTER_LISTEN", "")
    )
    # where gossip (7946/udp+tcp) listens: "" is 0.0.0.0:7946 advertised at the node's
    # address; unit tests use loopback, any port
    gossip_listen: str = field(default_factory=lambda: os.environ.get("SHOAL_GOSSIP_LISTEN", ""))
    reconcile_every: float = 10.0  # seconds between endpoint table reconciles
    insecure_registries: list[str] = field(default_factory=list)  # HOST:PORT spoken plain HTTP
    # registries this node may contact (None: any); tests set SHOAL_ALLOWED_REGISTRIES so
    # that a `service create busybox` never reaches out to docker.io
    allowed_registries: list[str] | None = field(default_factory=lambda: _allowed_registries())
    # dockerd's --metrics-addr: where /metrics and the dashboard listen ("" nowhere); the
    # listener itself is started by shoal/daemon.py (shoal/observe/server.py)
    metrics_addr: str = ""


class Daemon(RoleSwitch):
    """One node. `runtime` and `plane_factory` default to the real ones; tests pass fakes."""

    def __init__(
        self,
        opts: DaemonOptions,
        runtime: ExecRuntime | None = None,
        plane_factory: Callable[[], DataPlane] | None = None,
        probe: Callable[[str, list[int]], Awaitable[None]] | None = None,
        check_health: Callable[[Task, list[str], float], Awaitable[bool]] | None = None,
        overlay_factory: OverlayFactory | None = real_overlay,
    ) -> None:
        self._overlay_factory = overlay_factory
        self._check_health = check_health
        self.opts = opts
        self._probe = probe or wait_listening
        self.hostname = opts.hostname or socket.gethostname()
        self.version = __version__
        self.root = opts.data_root
        self.root.mkdir(parents=True, exist_ok=True)
        self.runtime = runtime or OciRuntime(self.root / "tasks")
        # images: one store per node under <root>/images (shoal/images), served by the API's
        # /images routes and pulled through by the oci runtime; whoever runs containers sets
        # `self.images.in_use` (image ID -> a container using it) so `image rm` refuses
        self.images = ImageStore(
            self.root / "images",
            opts.insecure_registries,
            allowed_registries=opts.allowed_registries,
        )
        if isinstance(self.runtime, OciRuntime):
            self.images.in_use = self.runtime.image_user
        self._plane_factory = plane_factory
        self.store: Store | None = None
        self.swarm: Membership | None = None
        self.root_ca: RootCA | None = None
        self.tls: NodeTLS | None = None
        self.endpoints = EndpointTable()
        self.agent: Agent | None = None
        self.network: NodeNetwork | None = None
        self.cluster: ClusterServices | None = None
        self.session: RemoteSession | None = None
        self.renewer: CertRenewer | None = None
        self.raft: RaftRole | None = None
        self._duties: LeaderDuties | None = None
        self.api_executor: Forwarder | None = None  # set by the API: runs forwarded requests
        self._plane: DataPlane | None = None
        self._manager: Manager | None = None
        self._ports: StorePorts | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._lock = asyncio.Lock()

    # -- what the API asks ------------------------------------------------------------
    def require_manager(self) -> Store:
        if self.swarm is None:
            raise Unavailable(NOT_IN_SWARM)
        if self.store is None:
            raise Unavailable(NOT_A_MANAGER)
        return self.store

    @property
    def local_state(self) -> str:
        return "active" if self.swarm is not None else "inactive"

    @property
    def is_manager(self) -> bool:
        return self.store is not None

    @property
    def _certs(self) -> Path:
        return self.root / "certificates"

    @property
    def _membership_file(self) -> Path:
        return self.root / "swarm" / "node.json"

    # -- lifecycle --------------------------------------------------------------------
    async def start(self) -> None:
        membership = load_membership(self._membership_file)
        if membership is None:
            return
        self.swarm = membership
        self.tls = load_node_tls(self._certs)
        log.info("daemon: resuming swarm membership as %s node %s", membership.role,
                 membership.node_id)
        if membership.role == "worker":
            if self.tls is None:
                log.error("daemon: no node certificate under %s; cannot rejoin", self._certs)
                return
            await self._start_worker()
            self._watch_role()
            return
        self._open_store(membership.node_id)
        self.root_ca = load_root_ca(self._certs)
        await self._start_manager()

    def _open_store(self, node_id: str, founding: bool = False) -> None:
        self._open_raft_store(node_id, founding)

    async def _bind_network(self, ports: PortSource, net: NetSource) -> NodeNetwork:
        """The node's mesh, overlay and gossip, gossip already bound (its address known)."""
        assert self.swarm is not None
        gateway = gateway_of(self.swarm.subnet)
        await self.runtime.ensure_node_network(gateway)
        self._plane = self._make_plane()
        host, _, port = self.opts.gossip_listen.rpartition(":")
        network = NodeNetwork(
            node_id=self.swarm.node_id,
            addr=self.swarm.addr,
            subnet=self.swarm.subnet,
            endpoints=self.endpoints,
            plane=self._plane,
            ports=ports,
            net=net,
            gossip=GossipOptions(
                node_id=self.swarm.node_id,
                bind_host=host or "0.0.0.0",
                port=int(port) if port else 7946,
                advertise_host=host if host not in ("", "0.0.0.0") else self.swarm.addr,
            ),
            overlay_factory=self._overlay_factory,
            reconcile_every=self.opts.reconcile_every,
        )
        attach_service_networks(network, self.runtime)  # net: DNS + service networks hook
        await network.bind()
        self.network = network
        return network

    async def _start_agent(self, session: AgentSession, network: NodeNetwork) -> None:
        assert self.swarm is not None
        gateway = gateway_of(self.swarm.subnet)
        ctx = NodeContext(
            node_id=self.swarm.node_id,
            hostname=self.hostname,
            gateway=gateway,
            runtime=self.runtime,
            ipam=SubnetAllocator(ipaddress.IPv4Network(self.swarm.subnet), [gateway.ip]),
            endpoints=self.endpoints,
            report=lambda update: None,
            drain_delay=self.opts.drain_delay,
            probe=self._probe,
            check_health=self._check_health
            or container_checker(
                self.runtime,
                netns_checker(
                    lambda task_id: str(self.runtime.netns_dir / self.runtime.netns_name(task_id)),
                    lambda task: task_env(task, self.hostname),
                ),
            ),
            images=self.images,
        )
        held = getattr(session, "secrets", None)  # the remote session's AssignedSecrets
        if isinstance(self.runtime, OciRuntime) and held is not None:
            self.runtime.secret_source = held
            ctx.registry_auth = lambda service_id: decode_auth_json(held.registry_auth(service_id))
        self.agent = Agent(ctx, session)
        self._spawn(self.agent.run(), "agent")
        network.start(ready=self.agent.recovered)

    def _spawn(self, coro: Awaitable[None], name: str) -> None:
        self._tasks.append(asyncio.ensure_future(coro))
        self._tasks[-1].set_name(name)

    async def _start_manager(self) -> None:
        assert self.store is not None and self.swarm is not None
        if self.root_ca is None:
            raise Unavailable(f"no root CA key under {self._certs}: cannot run as a manager")
        await self._start_raft()
        if self.tls is None:  # a data root from before node certificates existed
            self._save_tls(self._issue_local(new_key()))
        assert self.tls is not None
        self._ports = StorePorts(self.store)
        network = await self._bind_network(self._ports, StoreNet(self.store))
        await self._start_agent(self._manager_session(), network)
        self.cluster = self._cluster_services()
        try:
            await self.cluster.start(self.swarm.listen_addr, self.swarm.addr, network.gossip_addr)
        except Unavailable as exc:
            log.error("daemon: %s", exc.message)
            self.cluster = None
            raise
        self._keep_listen_port()
        self._serve_raft()
        self._watch_role()
        self.renewer = CertRenewer(
            lambda: self._current_tls(), self._sign_local, self._save_tls, random.Random()
        )
        self._spawn(self.renewer.run(), "cert-renewal")

    def _keep_listen_port(self) -> None:
        """A listener asked for "any port" (tests) keeps the port it got across restarts,
        as a manager on 2377 does: the other managers know it by that address."""
        assert self.swarm is not None and self.cluster is not None
        host, port = split_listen_addr(self.swarm.listen_addr)
        if port == 0 and self.cluster.port:
            self.swarm = replace(self.swarm, listen_addr=f"{host}:{self.cluster.port}")
            if self._membership_file.exists():
                save_membership(self._membership_file, self.swarm)

    async def _start_worker(self) -> None:
        assert self.swarm is not None and self.tls is not None
        feed, net = PortFeed(), NetFeed()
        network = await self._bind_network(feed, net)
        self.session = RemoteSession(
            self.swarm.managers,
            self._current_tls,
            self.hostname,
            self.swarm.addr,
            on_managers=self._save_managers,
            on_ports=feed.set,
            on_network=net.set,
            gossip_addr=network.gossip_addr,
        )
        self._spawn(self.session.run(), "session")
        await self._start_agent(self.session, network)
        self.renewer = CertRenewer(
            self._current_tls, self.session.renew, self._save_tls, random.Random()
        )
        self._spawn(self.renewer.run(), "cert-renewal")

    def _current_tls(self) -> NodeTLS:
        assert self.tls is not None
        return self.tls

    def _save_tls(self, tls: NodeTLS) -> None:
        save_node_tls(self._certs, tls)
        self.tls = tls
        if self.cluster is not None:
            self.cluster.reload(tls)

    def _save_managers(self, managers: list[str]) -> None:
        if self.swarm is not None:
            self.swarm = replace(self.swarm, managers=list(managers))
            save_membership(self._membership_file, self.swarm)

    def _issue_local(self, key: bytes) -> NodeTLS:
        """This manager signs its own certificate with the root CA it holds."""
        assert self.store is not None and self.root_ca is not None and self.swarm is not None
        cert = self._sign_for_self(make_csr(key))
        return NodeTLS(self.root_ca.cert_pem, cert, key)

    def _sign_for_self(self, csr: bytes) -> bytes:
        assert self.store is not None and self.root_ca is not None and self.swarm is not None
        swarm = self.store.view().clusters.list()[0]
        return sign_node_csr(
            self.root_ca,
            csr,
            self.swarm.node_id,
            "manager",
            swarm.id,
            datetime.timedelta(seconds=node_cert_expiry(swarm)),
            datetime.datetime.now(datetime.UTC),
        )

    async def _sign_local(self, csr: bytes) -> bytes:
        return self._sign_for_self(csr)

    def _make_plane(self) -> DataPlane:
        if self._plane_factory is not None:
            return self._plane_factory()
        if self.opts.mesh == "kernel":
            from shoal.mesh.kernel import KernelDataPlane

            return KernelDataPlane()
        if self.opts.mesh == "userspace":
            from shoal.mesh.userspace import UserspaceDataPlane

            return UserspaceDataPlane()
        raise NotSupported(f"mesh mode {self.opts.mesh!r} is not available yet (use kernel)")

    async def _stop_components(self, leave: bool = False) -> None:
        if self._duties is not None:
            await self._duties.close()
        elif self._manager is not None:
            await self._manager.become_follower()
        if self.network is not None:
            await self.network.stop(leave=leave)
        if self.cluster is not None:
            await self.cluster.stop()
            self.cluster = None
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._ports is not None:
            self._ports.close()
            self._ports = None

    async def shutdown(self) -> None:
        await self._stop_components()
        await self._close_raft()

    # -- swarm init / join / leave ------------------------------------------------------
    async def init_swarm(
        self,
        advertise_addr: str,
        pools: list[str],
        subnet_size: int,
        data_path_port: int,
        spec: SwarmSpec | None,
        listen_addr: str = "0.0.0.0:2377",
        force_new_cluster: bool = False,
    ) -> str:
        async with self._lock:
            if self.swarm is not None and force_new_cluster and self.swarm.role == "manager":
                return await self._force_new_cluster()
            if self.swarm is not None:
                raise Unavailable(ALREADY_IN_SWARM)
            addr = advertise_address(advertise_addr)
            _, port = split_listen_addr(self.opts.cluster_listen or listen_addr)
            node_id = new_id()
            ca = RootCA.generate("swarm")
            try:
                self._open_store(node_id, founding=True)
                assert self.store is not None
                await self._start_raft()
                _, node = await init_swarm(
                    self.store,
                    InitOptions(
                        advertise_addr=addr,
                        hostname=self.hostname,
                        default_addr_pool=pools,
                        subnet_size=subnet_size,
                        data_path_port=data_path_port,
                        spec=spec,
                        engine_version=self.version,
                        listen_port=port,
                        node_id=node_id,
                        raft_tick=round(tick_interval() * 1e9),
                        resources=host_resources(),
                    ),
                    ca,
                )
            except ShoalError:
                await self._stop_components()
                await self._forget_store()
                raise
            save_root_ca(self._certs, ca)
            self.root_ca = ca
            listen = self.opts.cluster_listen or listen_addr or "0.0.0.0:2377"
            self.swarm = Membership(node.id, node.subnet, addr, "manager", [], listen)
            self._save_tls(self._issue_local(new_key()))
            try:
                await self._start_manager()
            except ShoalError:
                await self._stop_components()
                await self._forget_store()
                self.swarm, self.tls, self.root_ca = None, None, None
                shutil.rmtree(self._certs, ignore_errors=True)
                raise
            save_membership(self._membership_file, self.swarm)
            log.info("daemon: swarm initialised, node %s is its manager", node.id)
            return node.id

    async def _forget_store(self) -> None:
        await self._close_raft()
        self.store, self.raft, self._manager = None, None, None
        shutil.rmtree(self.root / "swarm", ignore_errors=True)

    async def _force_new_cluster(self) -> str:
        """`swarm init --force-new-cluster`: this manager alone, every committed write kept."""
        assert self.swarm is not None
        swarm = self.swarm
        await self._stop_components()
        await self._close_raft()
        self.store, self.raft, self._manager = None, None, None
        force_new_cluster(self.root / "swarm", swarm.node_id)
        self._open_store(swarm.node_id)
        await self._start_manager()
        return swarm.node_id

    async def join(
        self,
        remotes: list[str],
        token: str,
        advertise_addr: str,
        availability: str,
        listen_addr: str = "0.0.0.0:2377",
    ) -> None:
        async with self._lock:
            if self.swarm is not None:
                raise Unavailable(ALREADY_IN_SWARM)
            advertise = advertise_address(advertise_addr) if advertise_addr else ""
            result = await join_swarm(
                remotes, token, self.hostname, advertise, availability, self.version
            )
            save_node_tls(self._certs, result.tls)
            self.tls = result.tls
            if result.tls.identity.role == "manager":
                listen = self.opts.cluster_listen or listen_addr or "0.0.0.0:2377"
                self.swarm = Membership(
                    result.node_id, result.subnet, result.addr, "manager", result.managers,
                    listen,
                )
                await self._become_joined_manager(result.tls, result.managers)
                await self._start_manager()
                save_membership(self._membership_file, self.swarm)
                log.info("daemon: joined the swarm as manager node %s", result.node_id)
                return
            self.swarm = Membership(
                result.node_id, result.subnet, result.addr, "worker", result.managers
            )
            save_membership(self._membership_file, self.swarm)
            await self._start_worker()
            self._watch_role()
            assert self.session is not None
            with contextlib.suppress(TimeoutError):  # it keeps trying in the background
                await asyncio.wait_for(self.session.connected.wait(), 10.0)
            log.info("daemon: joined the swarm as worker node %s", result.node_id)

    async def leave(self, force: bool) -> None:
        async with self._lock:
            if self.swarm is None:
                raise Unavailable("This node is not part of a swarm")
            if self.swarm.role == "manager" and not force:
                raise Unavailable(leave_refusal(self.raft))
            await self._leave_raft()
            if self._duties is not None:
                await self._duties.close()
            elif self._manager is not None:
                await self._manager.become_follower()
            if self.agent is not None:
                await self.agent.stop_all()
            await self._stop_components(leave=True)
            if self.network is not None:
                await self.network.close()
            for record in self.runtime.existing():
                with contextlib.suppress(ShoalError):
                    await self.runtime.purge(record.task_id)
            await self._close_raft()
            self.store, self.swarm, self.raft, self.agent = None, None, None, None
            self.network = None
            self.session, self.renewer, self.tls, self.root_ca = None, None, None, None
            self._manager = None
            self.endpoints = EndpointTable()
            shutil.rmtree(self.root / "swarm", ignore_errors=True)
            shutil.rmtree(self._certs, ignore_errors=True)
            log.info("daemon: left the swarm")

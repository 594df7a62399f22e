"""`Node`: one host — what every host has, and exactly one role object at a time.

Model: swarmkit's node/node.go. What every host has lives here for the node's whole life:
the task runtime, the image store, the endpoint table, the local API's view of the node
(`LocalNode`, in shoal.httpapi.node_api). Once in a swarm the node holds its membership
(`swarm`), its certificate (`tls`) and one role:

* `ManagerRole` (shoal.manager.role): store, Raft, CA and issuer, dispatcher, 2377
  services, leader-only duties; the node's own agent talks to the store in-process
  (`ManagerSession`);
* `WorkerRole` (shoal.node.worker): a session with the managers' dispatcher over 2377 and
  certificate renewal through it; the Docker API answers manager-only calls with 503.

Each role's run also has the host parts built for it (`HostParts`: node network + agent).
`_start_manager` / `_start_worker` start a role and its run; `_stop_role` is the one place
that stops them and drops them. Init, join, leave, promotion, demotion and
force-new-cluster all go through these.

State under the data root:
    swarm/node.json       membership: node ID, role, pool slice, address, managers' 2377
    swarm/raft.db         the store's Raft log and snapshots (SQLite; managers)
    certificates/         root CA (+ its key on managers), this node's certificate and key
    tasks/                the task runtime's per-task state and logs
    images/               the image store
Stopping the daemon leaves tasks and the mesh's kernel rules in place: a restarted daemon
adopts the tasks and re-applies the mesh, and the mesh keeps serving in between.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path

from shoal import __version__
from shoal.agent.agent import Agent
from shoal.agent.controller import wait_listening
from shoal.agent.exec.runtime import ExecRuntime
from shoal.agent.log_publisher import SubscriptionReader
from shoal.agent.oci.runtime import OciRuntime
from shoal.agent.session_client import RemoteSession
from shoal.api.session import AgentSession
from shoal.api.types import SwarmSpec, Task
from shoal.ca.certs import new_key
from shoal.ca.files import NodeTLS, load_node_tls, load_root_ca, save_node_tls, save_root_ca
from shoal.ca.renewal import CertRenewer
from shoal.ca.root import RootCA
from shoal.cluster.forward import Forwarder
from shoal.errors import ShoalError, Unavailable
from shoal.gossip.table import EndpointTable
from shoal.images import ImageStore
from shoal.manager.cluster_services import ClusterServices, split_listen_addr
from shoal.manager.raft_role import RaftRole
from shoal.manager.role import ManagerRole, fetch_root_ca
from shoal.manager.state.store import Store
from shoal.mesh.dataplane import DataPlane
from shoal.node import swarm_ops
from shoal.node.host import HostParts
from shoal.node.manager_session import ManagerSession
from shoal.node.membership import Membership, load_membership, save_membership
from shoal.node.mesh_sync import PortSource, StorePorts
from shoal.node.network import NetSource, NodeNetwork, OverlayFactory, StoreNet, real_overlay
from shoal.node.options import NOT_A_MANAGER, NOT_IN_SWARM, DaemonOptions
from shoal.node.role_change import RoleWatch, renewed_certificate
from shoal.node.worker import WorkerRole

__all__ = ["Node"]

log = logging.getLogger(__name__)

Role = ManagerRole | WorkerRole


class Node:
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
        self.opts = opts
        self.hostname = opts.hostname or socket.gethostname()
        self.version = __version__
        self.root = opts.data_root
        self.root.mkdir(parents=True, exist_ok=True)
        self.runtime: ExecRuntime = runtime or OciRuntime(self.root / "tasks")
        # images: one store per node under <root>/images (shoal/images), served by the API's
        # /images routes and pulled through by the oci runtime; whoever runs containers sets
        # `self.images.in_use` (image ID -> a container using it) so `image rm` refuses
        self.images = ImageStore(
            self.root / "images", opts.insecure_registries,
            allowed_registries=opts.allowed_registries,
        )
        if isinstance(self.runtime, OciRuntime):
            self.images.in_use = self.runtime.image_user
        self.host = HostParts(opts, self.hostname, self.runtime, self.images,
                              probe or wait_listening, check_health, plane_factory,
                              overlay_factory)
        self.endpoints = EndpointTable()
        self.api_executor: Forwarder | None = None  # set by the API: runs forwarded requests
        self.swarm: Membership | None = None
        self.tls: NodeTLS | None = None
        self.role: Role | None = None
        # the current role's run (built by _start_*, dropped by _stop_role)
        self.agent: Agent | None = None
        self.network: NodeNetwork | None = None
        self._sources: list[StorePorts | StoreNet] = []
        self._own_session: ManagerSession | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._switching: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    # -- what the API asks ------------------------------------------------------------
    @property
    def manager(self) -> ManagerRole | None:
        return self.role if isinstance(self.role, ManagerRole) else None

    @property
    def store(self) -> Store | None:
        return self.manager.store if self.manager is not None else None

    @property
    def raft(self) -> RaftRole | None:
        return self.manager.raft if self.manager is not None else None

    @property
    def root_ca(self) -> RootCA | None:
        return self.manager.root_ca if self.manager is not None else None

    @property
    def cluster(self) -> ClusterServices | None:
        return self.manager.cluster if self.manager is not None else None

    @property
    def session(self) -> RemoteSession | None:
        return self.role.session if isinstance(self.role, WorkerRole) else None

    @property
    def renewer(self) -> CertRenewer | None:
        return self.role.renewer if self.role is not None else None

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

    def background_tasks(self) -> list[asyncio.Task[None]]:
        """The tasks the node and its role run now (none should ever finish)."""
        own = self.role.background_tasks() if self.role is not None else []
        return [*self._tasks, *own]

    @property
    def _certs(self) -> Path:
        return self.root / "certificates"

    @property
    def _membership_file(self) -> Path:
        return self.root / "swarm" / "node.json"

    # -- lifecycle --------------------------------------------------------------------
    async def start(self) -> None:
        """Resume the membership on disk, if any, in the role it names."""
        membership = load_membership(self._membership_file)
        if membership is None:
            return
        self.swarm = membership
        self.tls = load_node_tls(self._certs)
        log.info("node: resuming swarm membership as %s node %s", membership.role,
                 membership.node_id)
        if membership.role == "manager":
            role = ManagerRole(self.root, membership.node_id, root_ca=load_root_ca(self._certs))
            await self._start_manager(role)
        elif self.tls is None:
            log.error("node: no node certificate under %s; cannot rejoin", self._certs)
        else:
            await self._start_worker()

    async def shutdown(self) -> None:
        await self._stop_role()
        self.runtime.close()  # the shim zygote; tasks and their shims live on

    def _spawn(self, coro: Awaitable[None], name: str) -> None:
        self._tasks.append(asyncio.ensure_future(coro))
        self._tasks[-1].set_name(name)

    async def _start_host(
        self, ports: PortSource, net: NetSource, session: Callable[[str], AgentSession]
    ) -> None:
        """The host parts of a role's run: the network (gossip bound), then the agent over
        the session the role makes once it knows the gossip address."""
        assert self.swarm is not None
        self.network = await self.host.bind_network(self.swarm, self.endpoints, ports, net)
        self.agent = self.host.agent(self.swarm, self.endpoints, session(self.network.gossip_addr))
        self._spawn(self.agent.run(), "agent")
        self.network.start(ready=self.agent.recovered)

    async def _start_manager(self, role: ManagerRole) -> None:
        assert self.swarm is not None
        if role.root_ca is None:
            raise Unavailable(f"no root CA key under {self._certs}: cannot run as a manager")
        self.role = role
        await role.start_raft(lambda: self.tls)
        if self.tls is None:  # a data root from before node certificates existed
            self._save_tls(role.issue_local(new_key()))
        ports, net = StorePorts(role.store), StoreNet(role.store)
        self._sources = [ports, net]
        await self._start_host(ports, net, lambda gossip: self._manager_session(role))
        assert self.network is not None and self.tls is not None
        port = await role.serve(
            self.tls, self.swarm.listen_addr, self.swarm.addr, self.network.gossip_addr,
            lambda: list(self.swarm.managers) if self.swarm is not None else [],
            lambda: self.api_executor,
        )
        self._keep_listen_port(port)
        if role.cluster is not None:  # its own tasks' lines, read as its publisher reads them
            log_path = self.runtime.log_path
            role.cluster.logs.local_reader = lambda sub: SubscriptionReader(sub, log_path)
        self._watch_role(role)
        role.start_renewal(self._current_tls, self._save_tls)

    def _manager_session(self, role: ManagerRole) -> ManagerSession:
        """The manager's own agent session: the local store, the leader's dispatcher."""
        assert self.swarm is not None
        session = self._own_session = ManagerSession(role.store, self.swarm.node_id, role.raft,
                                                     log_path=self.runtime.log_path)
        self._spawn(session.run(), "manager-session")
        return session

    async def _start_worker(self) -> None:
        assert self.swarm is not None and self.tls is not None
        role = WorkerRole(
            lambda: list(self.swarm.managers) if self.swarm is not None else [],
            self._current_tls, self.hostname, self.swarm.addr, self._save_managers,
            log_path=self.runtime.log_path,
        )
        self.role = role
        await self._start_host(role.ports, role.net, lambda gossip: role.start(gossip,
                                                                               self._save_tls))
        self._watch_role(role)

    async def _stop_role(self, leave: bool = False) -> Role | None:
        """Stop the role and its run (leader-only work first, the store last) and drop
        them; the role that ran, if any. Tasks keep running (the next agent adopts them)."""
        role, network = self.role, self.network
        if isinstance(role, ManagerRole):
            await role.stop_leading()
        if network is not None:
            await network.stop(leave=leave)
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for source in self._sources:
            source.close()
        if role is not None:
            await role.stop()
        self.role, self.agent, self.network, self._own_session = None, None, None, None
        self._sources = []
        return role

    def _keep_listen_port(self, port: int) -> None:
        """A listener asked for "any port" (tests) keeps the port it got across restarts,
        as a manager on 2377 does: the other managers know it by that address."""
        assert self.swarm is not None
        host, wanted = split_listen_addr(self.swarm.listen_addr)
        if wanted == 0 and port:
            self.swarm = replace(self.swarm, listen_addr=f"{host}:{port}")
            if self._membership_file.exists():
                save_membership(self._membership_file, self.swarm)

    # -- certificate and membership ---------------------------------------------------------
    def _current_tls(self) -> NodeTLS:
        assert self.tls is not None
        return self.tls

    def _save_tls(self, tls: NodeTLS) -> None:
        save_node_tls(self._certs, tls)
        self.tls = tls
        if self.role is not None:
            self.role.reload(tls)

    def _save_managers(self, managers: list[str]) -> None:
        if self.swarm is not None:
            self.swarm = replace(self.swarm, managers=list(managers))
            save_membership(self._membership_file, self.swarm)

    def _save_membership(self, swarm: Membership) -> None:
        self.swarm = swarm
        save_membership(self._membership_file, swarm)

    async def _joined_manager(self, tls: NodeTLS, managers: list[str]) -> ManagerRole:
        """A manager role for a node that joins (or is promoted): the root CA key from a
        manager, an empty Raft log the leader fills."""
        assert self.swarm is not None
        ca = await fetch_root_ca(tls, managers)
        save_root_ca(self._certs, ca)
        return ManagerRole(self.root, self.swarm.node_id, root_ca=ca)

    # -- changing role ------------------------------------------------------------------
    def _watch_role(self, role: Role) -> None:
        self._spawn(RoleWatch(role, self._begin_change).run(), "role-watch")

    def _begin_change(self, wanted: str) -> None:
        self._switching = asyncio.create_task(self._change_role(wanted), name="role-switch")

    async def _change_role(self, wanted: str) -> None:
        try:
            async with self._lock:
                await self._swap_role(wanted)
        except ShoalError as exc:
            log.warning("node: could not become a %s yet: %s", wanted, exc.message)
            if self.role is not None:
                self._watch_role(self.role)  # try again at the next look

    async def _swap_role(self, wanted: str) -> None:
        if self.swarm is None or self.role is None or self.swarm.role == wanted:
            return
        managers = self.role.manager_addrs()
        tls = await renewed_certificate(self._current_tls(), wanted, managers)
        await self._stop_role()
        ManagerRole.forget_state(self.root)  # a demoted manager's, or a stale old one
        self._save_tls(tls)
        if wanted == "worker":
            self._save_membership(replace(self.swarm, role="worker", managers=managers))
            await self._start_worker()
        else:
            listen = self.opts.manager_listen()
            self.swarm = replace(self.swarm, role="manager", listen_addr=listen)
            await self._start_manager(await self._joined_manager(tls, managers))
            self._save_membership(self.swarm)
        log.info("node: now a %s", wanted)

    # -- swarm init / join / leave (shoal.node.swarm_ops) ----------------------------------
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
        req = swarm_ops.InitRequest(advertise_addr, pools, subnet_size, data_path_port, spec,
                                    listen_addr)
        async with self._lock:
            return await swarm_ops.init(self, req, force_new_cluster)

    async def join(
        self,
        remotes: list[str],
        token: str,
        advertise_addr: str,
        availability: str,
        listen_addr: str = "0.0.0.0:2377",
    ) -> None:
        async with self._lock:
            await swarm_ops.join(self, remotes, token, advertise_addr, availability, listen_addr)

    async def leave(self, force: bool) -> None:
        async with self._lock:
            await swarm_ops.leave(self, force)

"""`shoal daemon`: one node — the API, and once in a swarm the manager, agent and mesh.

State under the data root:
    swarm/state.db        the store's durable log (SQLite)
    swarm/node.json       this node's ID and address pool slice
    certificates/         the root CA (until the CA issue moves it into the replicated store)
    tasks/                the exec runtime's per-task state and logs
Stopping the daemon leaves tasks and the mesh's kernel rules in place: a restarted daemon
adopts the tasks and re-applies the mesh, and the mesh keeps serving in between.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import shutil
import signal
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from shoal import __version__
from shoal.agent.agent import Agent, gateway_of
from shoal.agent.controller import NodeContext, wait_listening
from shoal.agent.exec.runtime import ExecRuntime
from shoal.agent.health import netns_checker
from shoal.agent.ipam import SubnetAllocator
from shoal.agent.taskenv import task_env
from shoal.api.types import Node, SwarmSpec, Task
from shoal.ca.root import RootCA
from shoal.errors import InvalidArgument, NotSupported, ShoalError, Unavailable
from shoal.gossip.table import EndpointTable
from shoal.manager.controlapi.swarm import InitOptions, init_swarm
from shoal.manager.dispatcher.session import LocalSession
from shoal.manager.state.locallog import LocalLog
from shoal.manager.state.store import Store
from shoal.mesh.dataplane import DataPlane
from shoal.node.manager import Manager
from shoal.node.mesh_sync import MeshSync

__all__ = ["Daemon", "DaemonOptions", "run_daemon"]

log = logging.getLogger(__name__)

NOT_IN_SWARM = (
    'This node is not a swarm manager. Use "docker swarm init" or "docker swarm join" to '
    "connect this node to swarm and try again."
)


@dataclass
class DaemonOptions:
    data_root: Path = Path("/var/lib/shoal")
    hosts: list[str] = field(default_factory=list)
    hostname: str | None = None
    mesh: str = "kernel"
    debug: bool = False
    drain_delay: float = 2.0


@dataclass(frozen=True)
class SwarmState:
    node_id: str
    subnet: str
    addr: str


class Daemon:
    """One node. `runtime` and `plane_factory` default to the real ones; tests pass fakes."""

    def __init__(
        self,
        opts: DaemonOptions,
        runtime: ExecRuntime | None = None,
        plane_factory: Callable[[], DataPlane] | None = None,
        probe: Callable[[str, list[int]], Awaitable[None]] | None = None,
        check_health: Callable[[Task, list[str], float], Awaitable[bool]] | None = None,
    ) -> None:
        self._check_health = check_health
        self.opts = opts
        self._probe = probe or wait_listening
        self.hostname = opts.hostname or socket.gethostname()
        self.version = __version__
        self.root = opts.data_root
        self.root.mkdir(parents=True, exist_ok=True)
        self.runtime = runtime or ExecRuntime(self.root / "tasks")
        self._plane_factory = plane_factory
        self.store: Store | None = None
        self.swarm: SwarmState | None = None
        self.endpoints = EndpointTable()
        self.agent: Agent | None = None
        self.mesh: MeshSync | None = None
        self._log: LocalLog | None = None
        self._plane: DataPlane | None = None
        self._manager: Manager | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._lock = asyncio.Lock()

    # -- what the API asks ------------------------------------------------------------
    def require_manager(self) -> Store:
        if self.store is None:
            raise Unavailable(NOT_IN_SWARM)
        return self.store

    @property
    def local_state(self) -> str:
        return "active" if self.swarm is not None else "inactive"

    # -- lifecycle --------------------------------------------------------------------
    async def start(self) -> None:
        state_file = self.root / "swarm" / "node.json"
        if state_file.exists():
            saved = json.loads(state_file.read_text())
            self.swarm = SwarmState(saved["node_id"], saved["subnet"], saved["addr"])
            self._open_store()
            log.info("daemon: resuming swarm membership as node %s", self.swarm.node_id)
            await self._start_components()

    def _open_store(self) -> None:
        (self.root / "swarm").mkdir(parents=True, exist_ok=True)
        store = Store()
        self._log = LocalLog(self.root / "swarm" / "state.db", store)
        self._log.restore()
        store.attach(self._log)
        self.store = store

    async def _start_components(self) -> None:
        assert self.store is not None and self.swarm is not None
        gateway = gateway_of(self.swarm.subnet)
        await self.runtime.ensure_node_network(gateway)
        self._plane = self._make_plane()
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
            or netns_checker(
                lambda task_id: str(self.runtime.netns_dir / self.runtime.netns_name(task_id)),
                lambda task: task_env(task, self.hostname),
            ),
        )
        session = LocalSession(self.store, self.swarm.node_id)
        self.agent = Agent(ctx, session)
        self.mesh = MeshSync(
            self.store,
            self.endpoints,
            self._plane,
            self.swarm.node_id,
            self.swarm.subnet,
            ready=self.agent.recovered,
        )
        self._manager = Manager(self.store)
        self._manager.become_leader()
        self._tasks = [
            asyncio.create_task(self.agent.run(), name="agent"),
            asyncio.create_task(self.mesh.run(), name="mesh"),
        ]

    def _make_plane(self) -> DataPlane:
        if self._plane_factory is not None:
            return self._plane_factory()
        if self.opts.mesh == "kernel":
            from shoal.mesh.kernel import KernelDataPlane

            return KernelDataPlane()
        raise NotSupported(f"mesh mode {self.opts.mesh!r} is not available yet (use kernel)")

    async def _stop_components(self) -> None:
        if self._manager is not None:
            await self._manager.become_follower()
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def shutdown(self) -> None:
        await self._stop_components()
        if self._log is not None:
            self._log.close()

    # -- swarm init / leave -------------------------------------------------------------
    async def init_swarm(
        self,
        advertise_addr: str,
        pools: list[str],
        subnet_size: int,
        data_path_port: int,
        spec: SwarmSpec | None,
    ) -> str:
        async with self._lock:
            if self.swarm is not None:
                raise Unavailable(
                    'This node is already part of a swarm. Use "docker swarm leave" to '
                    "leave this swarm and join another one."
                )
            addr = _advertise_address(advertise_addr)
            self._open_store()
            assert self.store is not None and self._log is not None
            self.store.attach(self._log)
            ca = RootCA.generate("swarm")
            try:
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
                    ),
                    ca,
                )
            except ShoalError:
                self._log.close()
                self.store = None
                shutil.rmtree(self.root / "swarm", ignore_errors=True)
                raise
            certs = self.root / "certificates"
            certs.mkdir(mode=0o700, exist_ok=True)
            (certs / "swarm-root-ca.crt").write_bytes(ca.cert_pem)
            key = certs / "swarm-root-ca.key"
            key.touch(mode=0o600)
            key.write_bytes(ca.key_pem)
            self._save_membership(node, addr)
            await self._start_components()
            log.info("daemon: swarm initialised, node %s is its manager", node.id)
            return node.id

    def _save_membership(self, node: Node, addr: str) -> None:
        self.swarm = SwarmState(node.id, node.subnet, addr)
        (self.root / "swarm" / "node.json").write_text(
            json.dumps({"node_id": node.id, "subnet": node.subnet, "addr": addr})
        )

    async def leave(self, force: bool) -> None:
        async with self._lock:
            if self.swarm is None:
                raise Unavailable("This node is not part of a swarm")
            if not force:
                raise Unavailable(
                    "You are attempting to leave the swarm on a node that is participating as "
                    "a manager. Removing the last manager erases all current state of the "
                    "swarm. Use `--force` to ignore this message."
                )
            if self._manager is not None:
                await self._manager.become_follower()
            if self.agent is not None:
                await self.agent.stop_all()
            await self._stop_components()
            if self._plane is not None:
                await self._plane.close()
            for record in self.runtime.existing():
                with contextlib.suppress(ShoalError):
                    await self.runtime.purge(record.task_id)
            if self._log is not None:
                self._log.close()
            self.store, self.swarm, self._log, self.agent, self.mesh = None, None, None, None, None
            self.endpoints = EndpointTable()
            shutil.rmtree(self.root / "swarm", ignore_errors=True)
            shutil.rmtree(self.root / "certificates", ignore_errors=True)
            log.info("daemon: left the swarm")


def _advertise_address(given: str) -> str:
    if given:
        host = given.rsplit(":", 1)[0] if given.count(":") == 1 else given
        try:
            return str(ipaddress.IPv4Address(host))
        except ValueError:
            raise InvalidArgument(
                f"advertise address must be a non-zero IPv4 address, got {given!r}"
            ) from None
    candidates = _local_addresses()
    if len(candidates) != 1:
        raise InvalidArgument(
            "could not choose an IP address to advertise since this system has "
            f"{'no' if not candidates else 'multiple'} addresses - specify one with "
            "--advertise-addr"
        )
    return candidates[0]


def _local_addresses() -> list[str]:
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        addrs = [a.get_attr("IFA_ADDRESS") for a in ipr.get_addr(family=socket.AF_INET)]
    return [a for a in addrs if a and not a.startswith("127.")]


async def _serve(opts: DaemonOptions) -> None:
    from shoal.httpapi.server import serve_api

    daemon = Daemon(opts)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with serve_api(daemon, opts.hosts or ["unix:///run/shoal/shoal.sock"]):
        await daemon.start()
        log.info("daemon: ready (%s)", ", ".join(opts.hosts or ["unix:///run/shoal/shoal.sock"]))
        await stop.wait()
        log.info("daemon: stopping (tasks and mesh rules stay for the next start)")
        await daemon.shutdown()


def run_daemon(opts: DaemonOptions) -> None:
    logging.basicConfig(
        level=logging.DEBUG if opts.debug else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(_serve(opts))

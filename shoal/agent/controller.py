"""One task's life on this node: prepare, start, run, and stop or exit, never backwards.

A controller is an asyncio task owned by the agent. It reports every state it reaches
through `report`, keeps the task's endpoint in the table exactly while the task is running
(out of it before a requested stop: drain first, then SIGTERM), and cleans the runtime up
whichever way the task ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from shoal import timeouts
from shoal.agent.dns.attachments import network_addresses
from shoal.agent.exec.runtime import ExecRuntime, ExitStatus, TaskConfig, TaskStartError
from shoal.agent.exec.taskdir import TaskFiles
from shoal.agent.health import HealthMonitor, health_spec
from shoal.agent.ipam import SubnetAllocator
from shoal.agent.oci.prepare import is_exec_task
from shoal.agent.oci.runtime import OciRuntime
from shoal.agent.taskenv import task_argv, task_env, task_name
from shoal.api.session import StatusUpdate
from shoal.api.states import TaskState, rank
from shoal.api.templates import TaskIdentity, TemplateError, expand
from shoal.api.timefmt import now_rfc3339
from shoal.api.types import ContainerStatus, HealthConfig, Task, TaskStatusInfo
from shoal.errors import ShoalError
from shoal.gossip.table import EndpointEntry, EndpointTable
from shoal.images import LocalImage, RegistryAuth

__all__ = ["START_CONCURRENCY", "NodeContext", "TaskController", "wait_listening"]

log = logging.getLogger(__name__)
T = TypeVar("T")
START_CONCURRENCY = 4


async def wait_listening(address: str, ports: list[int], interval: float = 0.05) -> None:
    """Return once every TCP port accepts a connection at `address`.

    A process that has started is not yet serving: routing to it before its socket listens
    fails connections. Until a health check says more, a task gets traffic once its
    published TCP target ports accept connections. The pause between attempts starts at
    5 ms and doubles up to `interval`: most servers listen within milliseconds of their
    start, and `running` (then the mesh) waits for this probe.
    """
    for port in ports:
        pause = min(0.005, interval)
        while True:
            try:
                _, writer = await timeouts.wait_for(asyncio.open_connection(address, port), 1.0)
            except (OSError, TimeoutError):
                await asyncio.sleep(pause)
                pause = min(pause * 2, interval)
                continue
            writer.close()
            break


class ImageSource(Protocol):
    """What the controller needs of the node's image store."""

    async def pull(self, ref: str, auth: RegistryAuth | None = None) -> LocalImage: ...

    def get(self, ref_or_id: str) -> LocalImage | None: ...


def _no_auth(service_id: str) -> RegistryAuth | None:
    return None


async def _no_checker() -> bool:
    raise RuntimeError("this node has no health check runner")


@dataclass
class NodeContext:
    node_id: str
    hostname: str
    gateway: ipaddress.IPv4Interface
    runtime: ExecRuntime
    ipam: SubnetAllocator
    endpoints: EndpointTable
    report: Callable[[StatusUpdate], None]
    drain_delay: float
    probe: Callable[[str, list[int]], Awaitable[None]] = wait_listening
    # runs a health check command for a task: (task, argv, timeout) -> passed
    check_health: Callable[[Task, list[str], float], Awaitable[bool]] = field(
        default=lambda task, argv, timeout: _no_checker()
    )
    images: ImageSource | None = None
    registry_auth: Callable[[str], RegistryAuth | None] = _no_auth
    # how many task starts run at once on this node (a burst of assignments queues here)
    start_slots: asyncio.Semaphore = field(
        default_factory=lambda: asyncio.Semaphore(START_CONCURRENCY)
    )


class TaskController:
    def __init__(self, ctx: NodeContext, task: Task, adopted_address: str | None = None) -> None:
        self.ctx = ctx
        self.task = task
        self.task_id = task.id
        self._stop = asyncio.Event()
        self._adopted = adopted_address
        self._address = adopted_address or ""
        self._in_mesh = False  # joined as ready once: may drain as a terminating endpoint
        self._state = task.status.state
        self._image: LocalImage | None = None  # a container task's image, once pulled
        self.done = False

    def request_stop(self) -> None:
        self._stop.set()

    def _report(
        self, state: str, message: str, err: str = "", exit_code: int | None = None, pid: int = 0
    ) -> None:
        if rank(state) < rank(self._state):
            return
        self._state = state
        status = TaskStatusInfo(timestamp=now_rfc3339(), state=state, message=message, err=err)
        if exit_code is not None or pid:
            status.container_status = ContainerStatus(
                container_id=self.task_id, pid=pid, exit_code=exit_code or 0
            )
        self.ctx.report(StatusUpdate(self.task_id, status, self._address))

    async def run(self) -> None:
        try:
            await self._run()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug or a runtime failure: the task fails, the agent lives
            log.exception("task %s: controller failed", self.task_id)
            self._report("failed", "task controller error", err=str(exc))
            await self._cleanup()
        finally:
            self.done = True

    async def _run(self) -> None:
        if self._stop.is_set():
            self._report("shutdown", "shutdown before start")
            return
        if self._adopted is None:
            pid = await self._start()
            if pid is None:
                return
        else:
            pid = 0
            log.info("task %s: adopted running process at %s", self.task_id, self._address)
        waiter = asyncio.ensure_future(self.ctx.runtime.wait(self.task_id))
        unhealthy = await self._serve(pid, waiter)
        if waiter.done() or unhealthy or not self._in_mesh:
            self.ctx.endpoints.remove(self.task_id)
        else:  # draining: out of every balancer, kept as a local-policy node's last resort
            self._join_mesh(ready=False)
        if waiter.done():
            self._exited(waiter.result())
        elif unhealthy:
            log.info("task %s: unhealthy, stopping it", self.task_id)
            await self._graceful_stop(waiter, drain=False)
            self._report("failed", "unhealthy", err="task: unhealthy container")
        else:
            await self._graceful_stop(waiter)
        await self._cleanup()

    async def _serve(self, pid: int, waiter: asyncio.Future[ExitStatus]) -> bool:
        """Until the task exits or must stop: ready -> in the mesh. True if it went unhealthy."""
        health = health_spec(self._health_config())
        if self.task.networks_attachments and not self._in_mesh:
            # on the node's service networks (interfaces, DNS) from the start, in no
            # balancer until ready: an application resolves and connects while it boots
            self._join_mesh(ready=False, starting=True)
        stopper = asyncio.ensure_future(self._stop.wait())
        try:
            if health is None:
                # `running` means serving: reported once the published TCP target ports
                # listen, so every node may route to a task the store calls running
                probe = self.ctx.probe(self._address, self.task.ready_ports or [])
                if not (await self._race(probe, waiter, stopper))[0]:
                    return False
                if self._adopted is None or self.task.status.state != "running":
                    self._report("running", "started", pid=pid)
                self._join_mesh()
                watch: set[asyncio.Future[Any]] = {waiter, stopper}
                await asyncio.wait(watch, return_when=asyncio.FIRST_COMPLETED)
                return False
            monitor = HealthMonitor(
                health,
                lambda argv, timeout: self.ctx.check_health(self.task, argv, timeout),
                time.monotonic,
            )
            self._record_health("starting")
            finished, healthy = await self._race(monitor.wait_healthy(), waiter, stopper)
            if not finished:
                return False
            if not healthy:
                self._record_health("unhealthy")
                return True
            self._record_health("healthy")
            self._report("running", "healthy", pid=pid)
            self._join_mesh()
            finished, _ = await self._race(monitor.wait_unhealthy(), waiter, stopper)
            if finished:
                self._record_health("unhealthy")
            return finished
        finally:
            stopper.cancel()

    def _record_health(self, status: str) -> None:
        """For `docker ps` / `docker inspect` on this node (State.Health.Status): a file in
        the task's dir, written on each change only."""
        with contextlib.suppress(OSError):  # the task dir is gone: nobody will ask
            TaskFiles(self.ctx.runtime.state_dir / self.task_id).health.write_text(status)

    def _health_config(self) -> HealthConfig | None:
        """The service's check; without one (no Test), the image's (Docker's rule)."""
        spec = self.task.spec.container_spec
        if spec is not None and spec.health_check is not None and spec.health_check.test:
            return spec.health_check
        # adopted after a restart: the image is local
        if self._image is None and spec and self.ctx.images and self._runs_container():
            self._image = self.ctx.images.get(spec.image)
        return self._image.config.healthcheck if self._image is not None else None

    @staticmethod
    async def _race(coro: Awaitable[T], *others: asyncio.Future[Any]) -> tuple[bool, T | None]:
        """Run `coro` until it finishes (True, result) or one of `others` does (False, None)."""
        fut = asyncio.ensure_future(coro)
        try:
            await asyncio.wait({fut, *others}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not fut.done():
                fut.cancel()
        if fut.done() and not fut.cancelled():
            return True, fut.result()
        return False, None

    def rejoin_mesh(self) -> None:
        """An adopted task that was serving: in the endpoint table at once."""
        self._join_mesh()

    def _join_mesh(self, ready: bool = True, starting: bool = False) -> None:
        self._in_mesh = self._in_mesh or ready
        self.ctx.endpoints.set(
            EndpointEntry(
                self.task.service_id, self.task_id, self.ctx.node_id, self._address, ready,
                service_name=self.task.service_name,
                networks=network_addresses(self.task),
                starting=starting,
                task_name=f"{task_name(self.task)}.{self.task_id}",
                hostname=self._hostname(),
            )
        )

    async def _start(self) -> int | None:
        self._report("accepted", "accepted")
        self._report("preparing", "preparing")
        spec = self.task.spec.container_spec
        image: LocalImage | None = None
        container = self._runs_container()
        if container:
            image = self._image = await self._pull()
            if image is None:
                return None
        address = self.ctx.ipam.allocate()
        self._address = str(address.ip)
        if self.task.networks_attachments:
            # in the table as starting before the runtime starts it: the node's service
            # networks plumb its interfaces and DNS before its program runs (netns_ready)
            self._join_mesh(ready=False, starting=True)
        env = task_env(self.task, self.ctx.hostname)
        cfg = TaskConfig(
            task_id=self.task_id,
            hostname=self._hostname(),
            argv=task_argv(self.task) if not container else [],
            env=env,
            address=address,
            gateway=self.ctx.gateway.ip,
            workdir=(spec.dir or None) if spec else None,
        )
        try:
            async with self.ctx.start_slots:
                self._report("starting", "starting")
                if image is not None and isinstance(self.ctx.runtime, OciRuntime):
                    extra = {k: v for k, v in env.items() if k.startswith("SHOAL_")}
                    return await self.ctx.runtime.start_container(cfg, self.task, image, extra)
                return await self.ctx.runtime.start(cfg)
        except TaskStartError as exc:
            log.info("task %s: start failed: %s", self.task_id, exc.message)
            self._report("rejected", "starting container failed", err=exc.message)
            await self._cleanup()
            return None

    def _hostname(self) -> str:
        """The service's `--hostname` with its templates expanded, else the task id[:12]."""
        spec = self.task.spec.container_spec
        if spec is None or not spec.hostname:
            return self.task_id[:12]
        task = self.task
        ident = TaskIdentity(
            task_id=task.id,
            task_name=f"{task_name(task)}.{task.id}",
            slot=task.slot,
            service_id=task.service_id,
            service_name=task.service_name,
            node_id=task.node_id,
            node_hostname=self.ctx.hostname,
        )
        try:
            return expand(spec.hostname, ident)
        except TemplateError:  # the manager checked it; an older manager may not have
            log.warning("task %s: bad hostname template %r", task.id, spec.hostname)
            return self.task_id[:12]

    def _runs_container(self) -> bool:
        """oci unless labelled exec; a node without an oci runtime (test fakes) runs exec."""
        spec = self.task.spec.container_spec
        return not is_exec_task(spec) and isinstance(self.ctx.runtime, OciRuntime)

    async def _pull(self) -> LocalImage | None:
        spec = self.task.spec.container_spec
        assert spec is not None
        if self.ctx.images is None:
            self._report("rejected", "preparing failed", err="this node has no image store")
            return None
        try:
            auth = self.ctx.registry_auth(self.task.service_id)
            return await self.ctx.images.pull(spec.image, auth)
        except ShoalError as exc:
            local = self.ctx.images.get(spec.image)
            if local is not None:  # swarm's rule: a failed pull falls back on a local image
                log.info("task %s: pull failed (%s), using the local image", self.task_id, exc)
                return local
            log.info("task %s: pull failed: %s", self.task_id, exc.message)
            self._report("rejected", "preparing failed", err=exc.message)
            return None

    def _exited(self, status: ExitStatus) -> None:
        if status.code == 0:
            self._report("complete", "finished", exit_code=0)
        else:
            self._report(
                "failed",
                "started",
                err=f"task: non-zero exit ({status.code})",
                exit_code=status.code,
            )
        log.info("task %s: exited: %s", self.task_id, status.message)

    async def _graceful_stop(self, waiter: asyncio.Future[ExitStatus], drain: bool = True) -> None:
        # out of the mesh first (done above), let in-flight requests finish, then stop
        if drain and self.ctx.drain_delay > 0:
            done, _ = await asyncio.wait({waiter}, timeout=self.ctx.drain_delay)
            if done:
                self._exited(waiter.result())
                return
        spec = self.task.spec.container_spec
        grace = (
            spec.stop_grace_period
            if spec and spec.stop_grace_period is not None
            else 10_000_000_000
        ) / 1e9
        await self.ctx.runtime.stop(self.task_id, grace)
        waiter.cancel()
        if drain:
            self._report("shutdown", "shutdown")

    async def _cleanup(self) -> None:
        self.ctx.endpoints.remove(self.task_id)
        try:
            await self.ctx.runtime.remove(self.task_id)
        except Exception:
            log.exception("task %s: runtime cleanup failed", self.task_id)
        if self._address:
            self.ctx.ipam.release(ipaddress.IPv4Address(self._address))

    @staticmethod
    def wants_stop(task: Task) -> bool:
        return rank(task.desired_state) > TaskState.RUNNING

"""`HealthPorts`: the health ports of "local" services, served by this node's daemon.

For each health port a `MeshState` names (`policy.health_targets`), one plain HTTP server
on `host:port` (0.0.0.0 by default: every address of the node's namespace) answers any
GET/HEAD with `{"service": name, "localEndpoints": N}`: 200 while N > 0 ready tasks of the
service run on this node, else 503 (kube-proxy's health check node port). An external load
balancer polls it to send the service's traffic only to nodes that will not refuse it.

`apply(state)` works by difference like the userspace data plane: the answers follow the
new state at once (handlers read the current targets), a port that left is closed, a new
one bound. A port that cannot be bound does not stop the others; its error is raised at the
end as one `MeshError` and the next `apply` tries again. The servers live in the daemon's
process: unlike the kernel mesh, they stop with it (a load balancer then sees the node
down until the daemon is back).
"""

from __future__ import annotations

import asyncio
import json
import logging

from aiohttp import web

from shoal.mesh.errors import MeshError
from shoal.mesh.model import MeshState
from shoal.mesh.policy import HealthTarget, health_body, health_targets

__all__ = ["HealthPorts"]

log = logging.getLogger(__name__)


class _Port:
    """One listening health port: an aiohttp low-level server on an asyncio server."""

    def __init__(self, number: int, owner: HealthPorts) -> None:
        self.number = number
        self._owner = owner
        self._web = web.Server(self._handle, access_log=None)
        self._server: asyncio.Server | None = None

    async def open(self, host: str) -> None:
        loop = asyncio.get_running_loop()
        try:
            self._server = await loop.create_server(
                self._web, host, self.number, reuse_address=True
            )
        except OSError as exc:
            raise MeshError(
                f"mesh: cannot listen on health port {host}:{self.number}: {exc.strerror or exc}"
            ) from exc

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._web.shutdown(timeout=1.0)
            await self._server.wait_closed()
            self._server = None

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        if request.method not in ("GET", "HEAD"):
            return web.Response(status=405, headers={"Allow": "GET, HEAD"})
        target = self._owner.target(self.number)
        if target is None:  # being closed: the service left or changed its port
            return web.Response(status=404)
        return web.Response(
            status=target.status,
            text=json.dumps(health_body(target)) + "\n",
            content_type="application/json",
            headers={"Cache-Control": "no-store"},
        )


class HealthPorts:
    """The health ports of this node (see the module docstring); `host` for tests."""

    def __init__(self, host: str = "0.0.0.0") -> None:
        self.host = host
        self._targets: dict[int, HealthTarget] = {}
        self._ports: dict[int, _Port] = {}
        self._lock = asyncio.Lock()
        self._problems: tuple[str, ...] = ()

    def target(self, port: int) -> HealthTarget | None:
        """What health port `port` answers now (None: not served)."""
        return self._targets.get(port) if port in self._ports else None

    @property
    def ports(self) -> list[int]:
        return sorted(self._ports)

    async def apply(self, state: MeshState) -> None:
        async with self._lock:
            targets, problems = health_targets(state)
            if problems != self._problems:
                for problem in problems:
                    log.warning("mesh: %s", problem)
                self._problems = problems
            self._log_changes(targets)
            self._targets = targets
            for number in sorted(self._ports.keys() - targets.keys()):
                await self._ports.pop(number).close()
                log.info("mesh: closed health port %d", number)
            failed: list[str] = []
            for number in sorted(targets.keys() - self._ports.keys()):
                port = _Port(number, self)
                try:
                    await port.open(self.host)
                except MeshError as exc:
                    failed.append(exc.message)
                    continue
                self._ports[number] = port
                log.info("mesh: serving health port %d for service %s", number,
                         targets[number].service_name)
            if failed:
                raise MeshError("; ".join(failed))

    def _log_changes(self, targets: dict[int, HealthTarget]) -> None:
        for number, new in sorted(targets.items()):
            old = self._targets.get(number)
            if old is None or old.status != new.status:
                log.info("mesh: health port %d of service %s answers %d (%d local endpoints)",
                         number, new.service_name, new.status, new.local_endpoints)

    async def close(self) -> None:
        async with self._lock:
            for port in self._ports.values():
                await port.close()
            self._ports.clear()
            self._targets = {}

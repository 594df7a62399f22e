"""A node changing role in place: `node promote` of a worker, `node demote` of a manager.

Like swarmkit's role manager and node, the store says which role a node should have; the
node notices and restarts its components in the new role, keeping its tasks (the agent
adopts them, as after a daemon restart):

* a worker polls `CA/Role` (its wanted role) every couple of seconds; once it is
  "manager" it renews its certificate (the new one says manager), fetches the root CA
  key, opens an empty Raft member and starts as a manager, whose hello makes the leader
  add it as a learner (then a voter, once caught up);
* a manager watches its own Node in its replicated store; once it is "worker" *and* its
  Raft member has been removed (the leader's RaftMembers does that, handing leadership
  over first if needed), it renews its certificate as a worker, drops its Raft state and
  the root CA key, and starts as a worker with a session to the remaining managers.

The switch runs in a task of its own (stopping the components cancels the watcher).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
from dataclasses import replace
from typing import Any, TypeVar

from shoal.ca.certs import make_csr, new_key, verify_node_cert
from shoal.ca.files import NodeTLS, save_node_tls
from shoal.cluster.client import ClusterClient
from shoal.cluster.wire import Empty, RenewRequest, RenewResponse
from shoal.errors import ShoalError, Unavailable
from shoal.manager.issuer import RoleResponse
from shoal.manager.raft.ids import raft_id
from shoal.node.membership import save_membership
from shoal.node.raft_wiring import RaftWiring

__all__ = ["RoleSwitch"]

log = logging.getLogger(__name__)
T = TypeVar("T")

_POLL = 2.0


class RoleSwitch(RaftWiring):
    _lock: asyncio.Lock
    opts: Any  # DaemonOptions
    session: Any  # RemoteSession | None
    _switching: asyncio.Task[None] | None = None

    async def _start_manager(self) -> None:
        raise NotImplementedError

    async def _start_worker(self) -> None:
        raise NotImplementedError

    async def _stop_components(self, leave: bool = False) -> None:
        raise NotImplementedError

    def _manager_listen(self) -> str:
        return str(self.opts.cluster_listen or "0.0.0.0:2377")

    # -- watching -----------------------------------------------------------------------
    def _watch_role(self) -> None:
        self._spawn(self._role_watch(), "role-watch")

    async def _role_watch(self) -> None:
        while True:
            await asyncio.sleep(_POLL if self.raft is None else 0.5)
            wanted = await self._wanted_role()
            if wanted is not None and self.swarm is not None and wanted != self.swarm.role:
                log.info("daemon: this node is to become a %s: switching", wanted)
                self._switching = asyncio.create_task(self._switch(wanted), name="role-switch")
                return

    async def _wanted_role(self) -> str | None:
        if self.raft is not None and self.store is not None and self.swarm is not None:
            node = self.store.view().nodes.get(self.swarm.node_id)
            members = self.raft.members
            removed = bool(members) and raft_id(self.swarm.node_id) not in members
            if node is not None and node.spec.role == "worker" and removed:
                return "worker"
            return None
        for addr in self._manager_addrs():
            with contextlib.suppress(ShoalError):
                answer = await self._call(addr, "CA/Role", Empty(), RoleResponse)
                return answer.role
        return None

    def _manager_addrs(self) -> list[str]:
        if self.store is not None and self.swarm is not None:
            return [
                n.manager_status.addr
                for n in self.store.view().nodes.list()
                if n.manager_status is not None and n.manager_status.addr
                and n.id != self.swarm.node_id and n.spec.role == "manager"
            ]
        return list(self.swarm.managers) if self.swarm is not None else []

    async def _call(self, addr: str, name: str, req: object, kind: type[T]) -> T:
        tls = self._current_tls()
        client = ClusterClient(addr, tls.ca_pem, tls)
        try:
            return await client.call(name, req, kind, timeout=5.0)
        finally:
            await asyncio.shield(client.close())

    # -- switching ----------------------------------------------------------------------
    async def _switch(self, role: str) -> None:
        try:
            async with self._lock:
                if self.swarm is None or self.swarm.role == role:
                    return
                managers = self._manager_addrs()
                tls = await self._renewed(role, managers)
                if role == "worker":
                    await self._to_worker(tls, managers)
                else:
                    await self._to_manager(tls, managers)
                log.info("daemon: now a %s", role)
        except ShoalError as exc:
            log.warning("daemon: could not become a %s yet: %s", role, exc.message)
            if self.swarm is not None:
                self._watch_role()  # try again at the next look

    async def _renewed(self, role: str, managers: list[str]) -> NodeTLS:
        """A certificate with the new role, signed by a manager (from the store's role)."""
        current = self._current_tls()
        for addr in managers:
            key = new_key()
            try:
                answer = await self._call(addr, "CA/Renew", RenewRequest(make_csr(key)),
                                          RenewResponse)
            except ShoalError:
                continue
            now = datetime.datetime.now(datetime.UTC)
            identity = verify_node_cert(current.ca_pem, answer.cert, now)
            if identity.role == role and identity.node_id == current.identity.node_id:
                return NodeTLS(current.ca_pem, answer.cert, key)
        raise Unavailable(f"no manager signed a {role} certificate for this node yet")

    async def _to_worker(self, tls: NodeTLS, managers: list[str]) -> None:
        assert self.swarm is not None
        await self._stop_components()
        await self._close_raft()
        self.store, self.raft, self._manager, self.root_ca = None, None, None, None
        swarm_dir = self.root / "swarm"
        for path in swarm_dir.glob("raft.db*"):
            path.unlink(missing_ok=True)
        (self.root / "certificates" / "swarm-root-ca.key").unlink(missing_ok=True)
        save_node_tls(self.root / "certificates", tls)
        self.tls = tls
        self.swarm = replace(self.swarm, role="worker", managers=managers)
        save_membership(swarm_dir / "node.json", self.swarm)
        await self._start_worker()
        self._watch_role()

    async def _to_manager(self, tls: NodeTLS, managers: list[str]) -> None:
        assert self.swarm is not None
        await self._stop_components()
        self.session = None
        save_node_tls(self.root / "certificates", tls)
        self.tls = tls
        self.swarm = replace(self.swarm, role="manager", listen_addr=self._manager_listen())
        for path in (self.root / "swarm").glob("raft.db*"):
            path.unlink(missing_ok=True)  # a former manager's log: it starts afresh
        await self._become_joined_manager(tls, managers)
        await self._start_manager()
        save_membership(self.root / "swarm" / "node.json", self.swarm)

"""A node changing role in place: `node promote` of a worker, `node demote` of a manager.

Like swarmkit's node.go, the store says which role a node should have; the node notices
and swaps its role object, keeping its tasks (the new role's agent adopts them, as after a
daemon restart):

* a worker polls `CA/Role` (its wanted role) every couple of seconds
  (`WorkerRole.wanted_role`); once it is "manager" it renews its certificate (the new one
  says manager), fetches the root CA key, and starts a `ManagerRole` over an empty Raft
  log, whose hello makes the leader add it as a learner (then a voter, once caught up);
* a manager watches its own Node in its replicated store (`ManagerRole.wanted_role`); once
  it is "worker" *and* its Raft member has been removed (the leader's RaftMembers does
  that, handing leadership over first if needed), it renews its certificate as a worker,
  stops its `ManagerRole`, drops its Raft state and the root CA key, and starts a
  `WorkerRole` with a session to the remaining managers.

`RoleWatch` runs the watching; the swap itself is `Node._change_role`, in a task of its
own (stopping the old role cancels the watcher).
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable
from typing import Protocol

from shoal.ca.certs import make_csr, new_key, verify_node_cert
from shoal.ca.files import NodeTLS
from shoal.cluster.wire import RenewRequest, RenewResponse
from shoal.errors import ShoalError, Unavailable
from shoal.node.worker import call_manager

__all__ = ["RoleWatch", "renewed_certificate"]

log = logging.getLogger(__name__)

MANAGER_POLL = 0.5  # a manager reads its own store: cheap
WORKER_POLL = 2.0  # a worker asks a manager (`CA/Role`)


class WatchedRole(Protocol):
    kind: str

    async def wanted_role(self) -> str | None: ...

    async def role_may_change(self, poll: float) -> None:
        """Return when `wanted_role` may answer differently: after `poll` seconds, or (a
        manager, which reads its own store) once a Raft round made it so."""
        ...


class RoleWatch:
    """Looks at the wanted role until it differs from `role.kind`, then calls `change`."""

    def __init__(self, role: WatchedRole, change: Callable[[str], None]) -> None:
        self.role = role
        self.change = change
        self.poll = MANAGER_POLL if role.kind == "manager" else WORKER_POLL

    async def run(self) -> None:
        while True:
            await self.role.role_may_change(self.poll)
            wanted = await self.role.wanted_role()
            if wanted is not None and wanted != self.role.kind:
                log.info("node: this node is to become a %s: switching", wanted)
                self.change(wanted)  # starts the switch in a task of its own
                return


async def renewed_certificate(current: NodeTLS, role: str, managers: list[str]) -> NodeTLS:
    """A certificate with the new role, signed by a manager (from the store's role)."""
    for addr in managers:
        key = new_key()
        try:
            answer = await call_manager(current, addr, "CA/Renew", RenewRequest(make_csr(key)),
                                        RenewResponse)
        except ShoalError:
            continue
        now = datetime.datetime.now(datetime.UTC)
        identity = verify_node_cert(current.ca_pem, answer.cert, now)
        if identity.role == role and identity.node_id == current.identity.node_id:
            return NodeTLS(current.ca_pem, answer.cert, key)
    raise Unavailable(f"no manager signed a {role} certificate for this node yet")

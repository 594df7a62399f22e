"""The managers' certificate authority service: joins and renewals over 2377.

Join (no client certificate): the token must be one of the swarm's current join tokens
(compared in constant time; a rotated token is gone from the store, so it fails at once).
The worker token makes a worker, the manager token a manager. The manager registers the
Node (ID, hostname, address, role, pool slice) and signs the node's CSR with that ID and
role; on a follower manager the registration cannot commit, so the whole join is relayed
to the leader (`join_on_leader`). A new manager then fetches the root CA key with its
manager certificate (`CA/RootKey`, managers only), as swarmkit's managers all hold it.

Renew (a member's certificate): a new certificate for the caller's node ID, with the
role the store has for it now (so a promotion or demotion takes effect at the next
renewal, as in swarmkit).
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Awaitable, Callable

import msgspec

from shoal.ca.certs import Role, sign_node_csr
from shoal.ca.root import RootCA, parse_join_token, token_matches
from shoal.cluster.server import ANYONE, MANAGERS, MEMBERS, Caller, ClusterServer
from shoal.cluster.wire import Empty, JoinRequest, JoinResponse, RenewRequest, RenewResponse
from shoal.errors import InvalidArgument, NotFound
from shoal.manager.controlapi.swarm import (
    JoinOptions,
    cluster,
    node_cert_expiry,
    register_node,
)
from shoal.manager.raft.errors import NotLeader
from shoal.manager.state.store import Store

__all__ = ["CertIssuer", "RoleResponse", "RootKeyResponse", "manager_addrs"]

log = logging.getLogger(__name__)

BAD_TOKEN = "A valid join token is necessary to join this cluster"


class RootKeyResponse(msgspec.Struct):
    key: bytes  # the root CA's private key (PEM)


class RoleResponse(msgspec.Struct):
    role: str  # the role the swarm wants the caller to have ("worker" | "manager")


def manager_addrs(store: Store) -> list[str]:
    """The 2377 address of every manager, leader first."""
    managers = [n for n in store.view().list("node") if n.manager_status is not None]
    managers.sort(key=lambda n: (not n.manager_status.leader, n.id))
    return [n.manager_status.addr for n in managers if n.manager_status.addr]


class CertIssuer:
    def __init__(
        self,
        store: Store,
        ca: RootCA,
        clock: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.UTC),
        join_on_leader: Callable[[JoinRequest], Awaitable[JoinResponse]] | None = None,
    ) -> None:
        self._store = store
        self._ca = ca
        self._clock = clock
        self._join_on_leader = join_on_leader

    def register(self, server: ClusterServer) -> None:
        server.add_unary("CA/Join", JoinRequest, ANYONE, self.join)
        server.add_unary("CA/Renew", RenewRequest, MEMBERS, self.renew)
        server.add_unary("CA/RootKey", Empty, MANAGERS, self.root_key)
        server.add_unary("CA/Role", Empty, MEMBERS, self.role)

    async def role(self, req: Empty, caller: Caller) -> RoleResponse:
        """The caller's wanted role (a worker polls it to learn of its promotion)."""
        assert caller.identity is not None
        node = self._store.view().get("node", caller.identity.node_id)
        if node is None:
            raise NotFound(f"node {caller.identity.node_id} is not a member of this swarm")
        return RoleResponse(node.spec.role)

    def _role_of_token(self, token: str) -> Role:
        try:
            digest, _ = parse_join_token(token)
        except ValueError:
            raise InvalidArgument(BAD_TOKEN) from None
        if digest != self._ca.digest():
            raise InvalidArgument(BAD_TOKEN + " (the token is for another swarm)")
        tokens = cluster(self._store.view()).join_tokens  # type: ignore[arg-type]
        if token_matches(token, tokens.worker):
            return "worker"
        if token_matches(token, tokens.manager):
            return "manager"
        raise InvalidArgument(BAD_TOKEN)

    def _sign(self, csr: bytes, node_id: str, role: Role) -> bytes:
        swarm = cluster(self._store.view())  # type: ignore[arg-type]
        expiry = datetime.timedelta(seconds=node_cert_expiry(swarm))
        return sign_node_csr(self._ca, csr, node_id, role, swarm.id, expiry, self._clock())

    async def join(self, req: JoinRequest, caller: Caller) -> JoinResponse:
        try:
            return await self._join(req)
        except NotLeader:
            if self._join_on_leader is None:
                raise
            log.info("ca: relaying the join of %s (%s) to the leader", req.hostname, req.addr)
            return await self._join_on_leader(req)

    async def root_key(self, req: Empty, caller: Caller) -> RootKeyResponse:
        assert caller.identity is not None
        node = self._store.view().get("node", caller.identity.node_id)
        if node is None or node.spec.role != "manager":
            raise InvalidArgument(f"node {caller.identity.node_id} is not a manager")
        log.info("ca: handing the root CA key to manager %s", node.id)
        return RootKeyResponse(self._ca.key_pem)

    async def _join(self, req: JoinRequest) -> JoinResponse:
        role = self._role_of_token(req.token)
        if req.availability not in ("", "active", "pause", "drain"):
            raise InvalidArgument(f"invalid availability {req.availability!r}")
        # the CSR is checked before the node exists, so a bad one leaves nothing behind
        swarm = cluster(self._store.view())  # type: ignore[arg-type]
        sign_node_csr(
            self._ca, req.csr, "probe", role, swarm.id, datetime.timedelta(minutes=1), self._clock()
        )
        node = await register_node(
            self._store,
            JoinOptions(
                req.hostname, req.addr, role, req.availability, req.engine_version, req.resources
            ),
        )
        cert = self._sign(req.csr, node.id, role)
        log.info("ca: node %s (%s, %s) joined as a %s", node.id, req.hostname, req.addr, role)
        return JoinResponse(node.id, cert, node.subnet, manager_addrs(self._store))

    async def renew(self, req: RenewRequest, caller: Caller) -> RenewResponse:
        assert caller.identity is not None
        node = self._store.view().get("node", caller.identity.node_id)
        if node is None:
            raise NotFound(f"node {caller.identity.node_id} is not a member of this swarm")
        role: Role = "manager" if node.spec.role == "manager" else "worker"
        log.info("ca: renewing the certificate of node %s (%s)", node.id, role)
        return RenewResponse(self._sign(req.csr, node.id, role))

"""The manager-side Raft wiring of the daemon, as a mixin of `Daemon`.

Kept out of daemon.py so the daemon's own module stays about starting and stopping
components. What is here: opening the store over Raft, starting the Raft member and the
leader-only duties, serving Raft on 2377, the manager's own agent session, joining as a
manager (root CA key included), and a manager leaving (removing itself from Raft).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from shoal.api.session import AgentSession
from shoal.ca.files import NodeTLS, save_root_ca
from shoal.ca.root import RootCA
from shoal.cluster.client import ClusterClient
from shoal.cluster.forward import Forwarder, ForwardRequest
from shoal.cluster.wire import Empty, JoinRequest, JoinResponse
from shoal.errors import InvalidArgument, ShoalError, Unavailable
from shoal.manager.issuer import RootKeyResponse
from shoal.manager.state.store import Store
from shoal.node.cluster_services import ClusterServices
from shoal.node.manager import Manager
from shoal.node.manager_session import ManagerSession
from shoal.node.membership import Membership
from shoal.node.network import NodeNetwork
from shoal.node.raft_members import LeaderDuties, RaftMembers
from shoal.node.raft_role import RaftRole

__all__ = ["RaftWiring", "leave_refusal"]

log = logging.getLogger(__name__)


def leave_refusal(raft: RaftRole | None) -> str:
    """Docker's answer to `swarm leave` without --force on a manager."""
    msg = "You are attempting to leave the swarm on a node that is participating as a manager. "
    if raft is not None:
        voters = raft.node.conf_state.voters
        reach = raft.node.reachability() if raft.node.is_leader else {}
        reachable = sum(1 for v in voters if v == raft.id or reach.get(v) or not reach)
        unreachable = len(voters) - reachable
        if reachable - 1 < len(voters) // 2 + 1 or len(voters) <= 1:
            if len(voters) <= 1:
                return msg + (
                    "Removing the last manager erases all current state of the swarm. Use "
                    "`--force` to ignore this message. "
                )
            msg += (
                f"Removing this node leaves {reachable - 1} managers out of "
                f"{reachable + unreachable}. Without a Raft quorum your swarm will be "
                "inaccessible. "
            )
    return msg + (
        "The only way to restore a swarm that has lost consensus is to reinitialize it with "
        "`--force-new-cluster`. Use `--force` to suppress this message."
    )


class RaftWiring:
    # provided by Daemon
    root: Path
    store: Store | None
    swarm: Membership | None
    tls: NodeTLS | None
    root_ca: RootCA | None
    cluster: ClusterServices | None
    network: NodeNetwork | None
    raft: RaftRole | None
    api_executor: Forwarder | None
    _manager: Manager | None
    _duties: LeaderDuties | None
    _own_session: ManagerSession | None = None

    def _spawn(self, coro: Awaitable[None], name: str) -> None:
        raise NotImplementedError

    def _current_tls(self) -> NodeTLS:
        raise NotImplementedError

    # -- opening and starting ---------------------------------------------------------
    def _open_raft_store(self, node_id: str, founding: bool) -> None:
        store = Store()
        self.raft = RaftRole(self.root / "swarm", store, node_id, founding=founding)
        self.store = store

    async def _start_raft(self) -> None:
        """Start the Raft member with the leader-only duties attached; a lone voter
        (`swarm init`, a single manager's restart) waits to lead, so writes work at once."""
        assert self.raft is not None and self.store is not None
        if self._duties is not None:
            return  # started already (swarm init starts Raft before its first write)
        self._manager = Manager(self.store)
        self._duties = LeaderDuties(self._manager, RaftMembers(self.raft))
        self.raft.node.on_leadership(self._duties)
        await self.raft.start(self._raft_tls)

    def _raft_tls(self) -> NodeTLS:
        if self.tls is None:  # swarm init: a lone voter sends nothing before it has one
            raise Unavailable("this manager has no certificate yet")
        return self.tls

    def _manager_session(self) -> AgentSession:
        assert self.raft is not None and self.store is not None and self.swarm is not None
        session = ManagerSession(self.store, self.swarm.node_id, self.raft)
        self._spawn(session.run(), "manager-session")
        self._own_session = session
        return session

    def _cluster_services(self) -> ClusterServices:
        assert self.store is not None and self.root_ca is not None and self.tls is not None
        assert self.swarm is not None
        return ClusterServices(
            self.store,
            self.root_ca,
            self.tls,
            self.swarm.node_id,
            executor=lambda: self.api_executor,
            join_on_leader=self._relay_join,
        )

    def _serve_raft(self) -> None:
        """Once 2377 listens: take Raft messages, say hello to the leader."""
        assert self.raft is not None and self.cluster is not None and self.swarm is not None
        addr = f"{self.swarm.addr}:{self.cluster.port}"
        swarm = self.swarm
        gossip = self.network.gossip_addr if self.network is not None else ""
        self.raft.serve(self.cluster.raft, addr, lambda: list(swarm.managers), gossip)
        if self._duties is not None:
            self._duties.attach(self.cluster)

    async def _relay_join(self, req: JoinRequest) -> JoinResponse:
        assert self.raft is not None
        return await self.raft.call_leader("CA/Join", req, JoinResponse)

    async def _close_raft(self) -> None:
        if self._duties is not None:
            await self._duties.close()
            self._duties = None
        if self.raft is not None:
            await self.raft.close()

    # -- joining as a manager ---------------------------------------------------------
    async def _fetch_root_ca(self, tls: NodeTLS, managers: list[str]) -> RootCA:
        """The root CA key, from a manager, over mutual TLS with our manager certificate."""
        failures = []
        for addr in managers:
            client = ClusterClient(addr, tls.ca_pem, tls)
            try:
                answer = await client.call("CA/RootKey", Empty(), RootKeyResponse)
            except ShoalError as exc:
                failures.append(f"{addr}: {exc.message}")
                continue
            finally:
                await asyncio.shield(client.close())
            ca = RootCA(tls.ca_pem, answer.key)
            _check_key(ca)
            return ca
        raise Unavailable("could not fetch the root CA key: " + "; ".join(failures))

    async def _become_joined_manager(self, tls: NodeTLS, managers: list[str]) -> None:
        assert self.swarm is not None
        ca = await self._fetch_root_ca(tls, managers)
        save_root_ca(self.root / "certificates", ca)
        self.root_ca = ca
        self._open_raft_store(self.swarm.node_id, founding=False)

    # -- leaving ------------------------------------------------------------------------
    async def _leave_raft(self) -> None:
        """`swarm leave --force` of a manager: hand leadership over, then have the leader
        remove this node (and so its Raft member). Best effort: without a quorum the
        node still leaves."""
        if self._own_session is not None:
            self._own_session.close()
        raft, swarm = self.raft, self.swarm
        if raft is None or swarm is None or len(raft.members) <= 1:
            return
        if raft.node.is_leader:
            with contextlib.suppress(ShoalError):
                await raft.node.transfer_leadership()
        request = ForwardRequest("DELETE", f"/nodes/{swarm.node_id}?force=1", [], b"")
        try:
            answer = await raft.forward(request)
            log.info("daemon: removed from the swarm by the leader (%d)", answer.status)
        except ShoalError as exc:
            log.warning("daemon: leaving without the leader's removal: %s", exc.message)

    def raft_status(self, node: Any) -> Any:
        return self.raft.manager_status(node) if self.raft is not None else node.manager_status


def _check_key(ca: RootCA) -> None:
    cert = x509.load_pem_x509_certificate(ca.cert_pem)
    key = serialization.load_pem_private_key(ca.key_pem, password=None)
    if cert.public_key().public_numbers() != key.public_key().public_numbers():  # type: ignore[union-attr]
        raise InvalidArgument("the manager sent a root CA key that does not match the root CA")

"""`ManagerRole`: everything a node runs while it is a manager, as one object.

Model: swarmkit's manager/manager.go. The role owns the store, this manager's Raft member
(`RaftRole`: storage, driver, 2377 transport), the root CA key and the certificate issuer,
the dispatcher and the other 2377 services (`ClusterServices`), the renewal of its own
certificate (signed here, with the root CA it holds) and `LeaderDuties`, the one place
where leader-only work starts and stops. The control API (`shoal.manager.controlapi`)
works on `store`.

Life cycle, driven by the node (`shoal.node.node.Node`):

    role = ManagerRole(root, node_id, founding=..., root_ca=...)   # opens the store
    await role.start_raft(tls)        # the member runs; a lone voter leads at once
    await role.serve(...)             # 2377 listens; Raft hello; dispatcher liveness
    role.start_renewal(tls, save)     # this manager's certificate stays fresh
    await role.stop()                 # everything above stops; raft.db stays

A node that stops being a manager stops this object and drops it (`forget_state` removes
the Raft log and the root CA key); nothing of it survives into the worker role.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import random
from collections.abc import Callable
from pathlib import Path

from shoal.ca.certs import make_csr, sign_node_csr
from shoal.ca.files import NodeTLS
from shoal.ca.renewal import CertRenewer
from shoal.ca.root import RootCA
from shoal.cluster.client import ClusterClient
from shoal.cluster.forward import Forwarder, ForwardRequest
from shoal.cluster.wire import Empty, JoinRequest, JoinResponse
from shoal.errors import InvalidArgument, ShoalError, Unavailable
from shoal.manager.cluster_services import ClusterServices
from shoal.manager.controlapi.swarm import node_cert_expiry
from shoal.manager.issuer import RootKeyResponse
from shoal.manager.leader import LeaderDuties, RaftMembers, Reconcilers
from shoal.manager.raft.ids import raft_id
from shoal.manager.raft_role import RaftRole
from shoal.manager.state.store import Store
from shoal.wakeups import sleep_on_grid

__all__ = ["ManagerRole", "fetch_root_ca", "leave_refusal"]

log = logging.getLogger(__name__)

ROOT_KEY = "swarm-root-ca.key"


class ManagerRole:
    kind = "manager"

    def __init__(
        self, root: Path, node_id: str, *, founding: bool = False, root_ca: RootCA | None = None
    ) -> None:
        self.root = root
        self.node_id = node_id
        self.store = Store()
        self.raft = RaftRole(root / "swarm", self.store, node_id, founding=founding)
        self.root_ca = root_ca
        self.duties = LeaderDuties(Reconcilers(self.store), RaftMembers(self.raft))
        self.cluster: ClusterServices | None = None
        self.renewer: CertRenewer | None = None
        self._started = False
        self._renewal: asyncio.Task[None] | None = None

    # -- starting -------------------------------------------------------------------------
    async def start_raft(self, tls: Callable[[], NodeTLS | None]) -> None:
        """Run the Raft member with the leader-only duties attached (once: `swarm init`
        starts it before its first write)."""
        if self._started:
            return
        self._started = True

        def current() -> NodeTLS:
            value = tls()
            if value is None:  # swarm init: a lone voter sends nothing before it has one
                raise Unavailable("this manager has no certificate yet")
            return value

        self.raft.node.on_leadership(self.duties)
        await self.raft.start(current)

    async def serve(
        self,
        tls: NodeTLS,
        listen_addr: str,
        advertise: str,
        gossip_addr: str,
        managers: Callable[[], list[str]],
        executor: Callable[[], Forwarder | None],
    ) -> int:
        """Listen on 2377 (issuer, dispatcher, Raft, forwarding), say hello to the leader;
        the port actually bound."""
        if self.root_ca is None:
            raise Unavailable("no root CA key: cannot run as a manager")
        cluster = ClusterServices(
            self.store, self.root_ca, tls, self.node_id,
            executor=executor, join_on_leader=self._relay_join,
        )
        try:
            await cluster.start(listen_addr, advertise, gossip_addr)
        except Unavailable as exc:
            log.error("manager: %s", exc.message)
            raise
        self.cluster = cluster
        self.raft.serve(cluster.raft, f"{advertise}:{cluster.port}", managers, gossip_addr)
        self.duties.attach(cluster)
        return cluster.port

    def start_renewal(
        self, current: Callable[[], NodeTLS], save: Callable[[NodeTLS], None]
    ) -> None:
        self.renewer = CertRenewer(current, self._sign_local, save, random.Random())
        self._renewal = asyncio.create_task(self.renewer.run(), name="cert-renewal")

    async def _relay_join(self, req: JoinRequest) -> JoinResponse:
        return await self.raft.call_leader("CA/Join", req, JoinResponse)

    # -- this manager's own certificate -----------------------------------------------------
    def issue_local(self, key: bytes) -> NodeTLS:
        """This manager signs its own certificate with the root CA it holds."""
        assert self.root_ca is not None
        return NodeTLS(self.root_ca.cert_pem, self._sign_for_self(make_csr(key)), key)

    def _sign_for_self(self, csr: bytes) -> bytes:
        assert self.root_ca is not None
        swarm = self.store.view().clusters.list()[0]
        return sign_node_csr(
            self.root_ca,
            csr,
            self.node_id,
            "manager",
            swarm.id,
            datetime.timedelta(seconds=node_cert_expiry(swarm)),
            datetime.datetime.now(datetime.UTC),
        )

    async def _sign_local(self, csr: bytes) -> bytes:
        return self._sign_for_self(csr)

    def reload(self, tls: NodeTLS) -> None:
        """New connections on 2377 present `tls` (after a renewal)."""
        if self.cluster is not None:
            self.cluster.reload(tls)

    # -- what the node asks ---------------------------------------------------------------
    async def role_may_change(self, poll: float) -> None:
        """The answer of `wanted_role` changes only with the store or the Raft
        configuration, i.e. when the driver applies something: wait for that (no poll
        of our own: an idle manager woke for it twice a second); a look at least every
        30 s regardless, and every `poll` when the driver is not running."""
        node = self.raft.node
        past = node.applied
        if not node.running or not await node.wait_applied(past, 30.0):
            await sleep_on_grid(poll)

    async def wanted_role(self) -> str | None:
        return self._wanted()

    def _wanted(self) -> str | None:
        """"worker" once this node is demoted in the store *and* out of Raft (the leader's
        RaftMembers removed it, handing leadership over first if needed)."""
        node = self.store.view().nodes.get(self.node_id)
        members = self.raft.members
        removed = bool(members) and raft_id(self.node_id) not in members
        if node is not None and node.spec.role == "worker" and removed:
            return "worker"
        return None

    def manager_addrs(self) -> list[str]:
        """The other managers' 2377 addresses, as the store knows them."""
        return [
            n.manager_status.addr
            for n in self.store.view().nodes.list()
            if n.manager_status is not None and n.manager_status.addr
            and n.id != self.node_id and n.spec.role == "manager"
        ]

    def leave_refusal(self) -> str:
        return leave_refusal(self.raft)

    async def leave(self) -> None:
        """`swarm leave --force` of a manager: hand leadership over, then have the leader
        remove this node (and so its Raft member). Best effort: without a quorum the
        node still leaves."""
        raft = self.raft
        if len(raft.members) <= 1:
            return
        if raft.node.is_leader:
            with contextlib.suppress(ShoalError):
                await raft.node.transfer_leadership()
        request = ForwardRequest("DELETE", f"/nodes/{self.node_id}?force=1", [], b"")
        try:
            answer = await raft.forward(request)
            log.info("manager: removed from the swarm by the leader (%d)", answer.status)
        except ShoalError as exc:
            log.warning("manager: leaving without the leader's removal: %s", exc.message)

    def background_tasks(self) -> list[asyncio.Task[None]]:
        return [t for t in (self._renewal,) if t is not None]

    # -- stopping ---------------------------------------------------------------------------
    async def stop_leading(self) -> None:
        """No leader-only work from now on (the Raft member keeps running)."""
        await self.duties.close()

    async def stop(self) -> None:
        """Stop every part of the role; its state on disk stays (a restart resumes it)."""
        await self.duties.close()
        if self.cluster is not None:
            await self.cluster.stop()
            self.cluster = None
        if self._renewal is not None:
            self._renewal.cancel()
            await asyncio.gather(self._renewal, return_exceptions=True)
            self._renewal = None
        await self.raft.close()

    @staticmethod
    def forget_state(root: Path) -> None:
        """A former manager's Raft log and root CA key: gone (demotion; a promoted
        worker also starts with an empty log)."""
        for path in (root / "swarm").glob("raft.db*"):
            path.unlink(missing_ok=True)
        (root / "certificates" / ROOT_KEY).unlink(missing_ok=True)


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


async def fetch_root_ca(tls: NodeTLS, managers: list[str]) -> RootCA:
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


def _check_key(ca: RootCA) -> None:
    # at a promotion only: cryptography is not imported with this module (see ca/certs.py)
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    cert = x509.load_pem_x509_certificate(ca.cert_pem)
    key = serialization.load_pem_private_key(ca.key_pem, password=None)
    if cert.public_key().public_numbers() != key.public_key().public_numbers():  # type: ignore[union-attr]
        raise InvalidArgument("the manager sent a root CA key that does not match the root CA")

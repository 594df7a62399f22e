"""What the local API needs of the node it serves: `LocalNode`.

The route modules are typed against this Protocol, not against `shoal.node.node.Node`;
the daemon satisfies it structurally (mypy checks that where the app is built, since
`DAEMON_KEY` holds a `LocalNode`). Handlers read the members below and call their methods;
they never reach further into the daemon (no `daemon.raft.node...`), and every write to the
cluster state goes through `shoal.manager.controlapi`.

The members, by the need they serve:
* control API and reads: `require_manager()` (the store of a manager, else docker's
  "not a manager" error), `store`, `is_manager`, `swarm` (this node's membership);
* swarm init / join / leave: `init_swarm`, `join`, `leave`, `root_ca`, `tls`;
* forwarding and read barriers: `raft` (a `LeaderRaft`: who leads, forward a request,
  barrier, membership checks) and `api_executor` (set by the app: runs forwarded requests);
* the mesh's view: `network`, `cluster` (the 2377 listener), `opts.mesh`;
* images and task containers: `images`, `runtime` (task logs), `root` (volumes).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from shoal.agent.exec.runtime import ExecRuntime
from shoal.api.types import ManagerStatus, Node, SwarmSpec
from shoal.ca.files import NodeTLS
from shoal.ca.root import RootCA
from shoal.cluster.forward import Forwarder, ForwardRequest, ForwardResponse
from shoal.images import ImageStore
from shoal.manager.cluster_services import ClusterServices
from shoal.manager.state.store import Store
from shoal.node.membership import Membership
from shoal.node.network import NodeNetwork
from shoal.node.options import DaemonOptions

__all__ = ["LeaderRaft", "LocalNode"]


class LeaderRaft(Protocol):
    """This manager's Raft as the API sees it (`shoal.manager.raft_role.RaftRole`)."""

    @property
    def id(self) -> int: ...
    @property
    def is_leader(self) -> bool: ...
    @property
    def leader_id(self) -> int: ...
    @property
    def members(self) -> tuple[int, ...]: ...
    def manager_status(self, node: Node) -> ManagerStatus | None: ...
    def check_removal(self, node_id: str) -> None: ...
    async def remove_member(self, rid: int) -> None: ...
    async def transfer_leadership(self) -> int: ...
    async def barrier(self) -> None: ...
    async def await_own_leadership(self) -> bool: ...
    async def forward(self, req: ForwardRequest) -> ForwardResponse: ...


class LocalNode(Protocol):
    """The node behind the local API (`shoal.node.node.Node` satisfies it)."""

    api_executor: Forwarder | None

    @property
    def opts(self) -> DaemonOptions: ...
    @property
    def hostname(self) -> str: ...
    @property
    def root(self) -> Path: ...
    @property
    def store(self) -> Store | None: ...
    @property
    def swarm(self) -> Membership | None: ...
    @property
    def is_manager(self) -> bool: ...
    @property
    def raft(self) -> LeaderRaft | None: ...
    @property
    def root_ca(self) -> RootCA | None: ...
    @property
    def tls(self) -> NodeTLS | None: ...
    @property
    def network(self) -> NodeNetwork | None: ...
    @property
    def cluster(self) -> ClusterServices | None: ...
    @property
    def runtime(self) -> ExecRuntime: ...
    @property
    def images(self) -> ImageStore: ...

    def require_manager(self) -> Store: ...

    async def init_swarm(
        self,
        advertise_addr: str,
        pools: list[str],
        subnet_size: int,
        data_path_port: int,
        spec: SwarmSpec | None,
        listen_addr: str = "0.0.0.0:2377",
        force_new_cluster: bool = False,
    ) -> str: ...

    async def join(
        self,
        remotes: list[str],
        token: str,
        advertise_addr: str,
        availability: str,
        listen_addr: str = "0.0.0.0:2377",
    ) -> None: ...

    async def leave(self, force: bool) -> None: ...

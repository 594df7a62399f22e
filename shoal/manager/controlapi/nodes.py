"""Node operations of the control API: validate an update, remove a node.

Removing a node deletes its object and records its ID in the cluster's `RemovedNodes` in one
transaction (so its certificate is refused from then on), then asks Raft to drop its member
at once if it is one (the leader's `RaftMembers` completes it otherwise). A manager is only
removed with `force`, never when the remaining managers would lose quorum, and a leader
removing itself first hands its leadership over (`NotLeader` sends the client on).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from shoal.api.types import Node, NodeSpec
from shoal.errors import InvalidArgument, OutOfSequence, ShoalError
from shoal.manager.controlapi.resolve import resolve
from shoal.manager.raft.errors import NotLeader
from shoal.manager.raft.ids import raft_id
from shoal.manager.state.store import Store, Tx

__all__ = [
    "RaftMembership",
    "remove_node",
    "update_node",
    "update_node_spec",
    "validate_node_spec",
]

_ROLES = ("", "worker", "manager")


class RaftMembership(Protocol):
    """What node removal needs of this manager's Raft."""

    @property
    def members(self) -> tuple[int, ...]: ...

    def check_removal(self, node_id: str) -> None: ...

    async def remove_member(self, rid: int) -> None: ...

    async def transfer_leadership(self) -> int: ...


def validate_node_spec(spec: NodeSpec) -> None:
    """Refuse a spec docker would refuse before it reaches the store."""
    if spec.role not in _ROLES:
        raise InvalidArgument(f"invalid role {spec.role!r}")


async def update_node(
    store: Store, raft: RaftMembership | None, ref: str, version: int | None, spec: NodeSpec
) -> Node:
    """Validate and store a node's new spec (demotion needs Raft to drop the member)."""
    validate_node_spec(spec)
    return await update_node_spec(
        store, ref, version, spec, check_demote=raft.check_removal if raft is not None else None
    )


async def update_node_spec(
    store: Store,
    ref: str,
    version: int | None,
    spec: NodeSpec,
    check_demote: Callable[[str], None] | None = None,
) -> Node:
    """`check_demote(node_id)` raises when removing that manager from Raft would lose the
    quorum; without it demotion is refused (no Raft to remove it from)."""

    def fn(tx: Tx) -> Node:
        node: Node = resolve(tx.nodes, ref)
        if version is not None and version != node.version.index:
            raise OutOfSequence("rpc error: code = Unknown desc = update out of sequence")
        if spec.role == "worker" and node.spec.role == "manager":
            managers = tx.nodes.find(lambda n: n.spec.role == "manager")
            if len(managers) <= 1:
                raise InvalidArgument(
                    "rpc error: code = FailedPrecondition desc = attempting to demote the "
                    "last manager of the swarm"
                )
            if check_demote is None:
                raise InvalidArgument(
                    "rpc error: code = FailedPrecondition desc = demoting a manager needs Raft"
                )
            check_demote(node.id)
        node.spec = NodeSpec(
            name=spec.name,
            labels=spec.labels,
            role=spec.role or node.spec.role,
            availability=spec.availability or node.spec.availability,
        )
        tx.nodes.update(node)
        return node

    return await store.update(fn)


async def remove_node(
    store: Store, raft: RaftMembership | None, self_id: str | None, ref: str, force: bool
) -> Node:
    """Remove the node `ref` names (docker's `node rm [--force]`)."""
    node = resolve(store.view().nodes, ref)
    if node.spec.role == "manager":
        await _check_manager_removal(raft, node, node.id == self_id, force)
    if not force and node.status.state != "down":
        raise InvalidArgument(
            f"rpc error: code = FailedPrecondition desc = node {node.id} is not down and "
            "can't be removed"
        )

    def drop(tx: Tx) -> None:
        tx.nodes.delete(node.id)
        for cluster in tx.clusters.list():
            cluster.removed_nodes = sorted({*(cluster.removed_nodes or ()), node.id})
            tx.clusters.update(cluster)

    await store.update(drop)
    if raft is not None and raft_id(node.id) in raft.members:
        try:  # at once if possible; RaftMembers completes it otherwise
            await raft.remove_member(raft_id(node.id))
        except ShoalError:
            pass
    return node


async def _check_manager_removal(
    raft: RaftMembership | None, node: Node, is_self: bool, force: bool
) -> None:
    if not force or raft is None or (is_self and len(raft.members) <= 1):
        raise InvalidArgument(
            "rpc error: code = FailedPrecondition desc = node "
            f"{node.id} is a cluster manager and is a member of the raft cluster. It must be "
            "demoted to worker before removal"
        )
    raft.check_removal(node.id)
    if is_self:  # the leader removing itself: hand over, then the new leader does it
        new = await raft.transfer_leadership()
        raise NotLeader("leadership handed over before removing this manager", new)

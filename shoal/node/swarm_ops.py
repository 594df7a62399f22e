"""`swarm init`, `swarm join`, `swarm leave` and `--force-new-cluster` of a `Node`.

Each one, under the node's lock, makes the role the node is to hold and starts it through
`Node._start_manager` / `Node._start_worker`, or stops it through `Node._stop_role`;
what is kept on disk (membership, certificates, Raft log) changes with it. They are
functions over the node (its methods delegate here) so that node.py stays about holding
and swapping roles.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
from dataclasses import dataclass
from typing import TYPE_CHECKING

from shoal import timeouts
from shoal.agent.resources import host_resources
from shoal.api.types import SwarmSpec
from shoal.ca.certs import new_key
from shoal.ca.files import load_root_ca, save_node_tls, save_root_ca
from shoal.ca.root import RootCA
from shoal.errors import ShoalError, Unavailable
from shoal.gossip.table import EndpointTable
from shoal.manager.cluster_services import split_listen_addr
from shoal.manager.controlapi.swarm import InitOptions, init_swarm
from shoal.manager.raft_open import force_new_cluster
from shoal.manager.raft_role import tick_interval
from shoal.manager.role import ManagerRole, leave_refusal
from shoal.manager.state.store import new_id
from shoal.node.addresses import advertise_address
from shoal.node.joining import join_swarm
from shoal.node.membership import Membership
from shoal.node.options import ALREADY_IN_SWARM

if TYPE_CHECKING:
    from shoal.node.node import Node

__all__ = ["InitRequest", "init", "join", "leave"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InitRequest:
    """What `swarm init` asks (the API's SwarmInitRequest, decoded)."""

    advertise_addr: str
    pools: list[str]
    subnet_size: int
    data_path_port: int
    spec: SwarmSpec | None
    listen_addr: str


async def init(node: Node, req: InitRequest, force_new: bool) -> str:
    """`swarm init` (or `--force-new-cluster` of a manager); the new node ID."""
    swarm = node.swarm
    if swarm is not None and force_new and swarm.role == "manager":
        return await _force_new_cluster(node, swarm)
    if swarm is not None:
        raise Unavailable(ALREADY_IN_SWARM)
    addr = advertise_address(req.advertise_addr)
    node_id = new_id()
    ca = RootCA.generate("swarm")
    role = ManagerRole(node.root, node_id, founding=True, root_ca=ca)
    try:
        node_id, subnet = await _found(node, role, req, addr, ca)
    except ShoalError:
        await role.stop()
        shutil.rmtree(node.root / "swarm", ignore_errors=True)
        raise
    save_root_ca(node._certs, ca)
    listen = node.opts.manager_listen(req.listen_addr)
    node.swarm = Membership(node_id, subnet, addr, "manager", [], listen)
    node._save_tls(role.issue_local(new_key()))
    try:
        await node._start_manager(role)
    except ShoalError:
        await node._stop_role()
        shutil.rmtree(node.root / "swarm", ignore_errors=True)
        node.swarm, node.tls = None, None
        shutil.rmtree(node._certs, ignore_errors=True)
        raise
    node._save_membership(node.swarm)
    log.info("node: swarm initialised, node %s is its manager", node_id)
    return node_id


async def _found(
    node: Node, role: ManagerRole, req: InitRequest, addr: str, ca: RootCA
) -> tuple[str, str]:
    """Start the founding member's Raft and write the swarm's first objects; the node's
    ID and pool slice."""
    _, port = split_listen_addr(node.opts.cluster_listen or req.listen_addr)
    await role.start_raft(lambda: node.tls)
    _, created = await init_swarm(
        role.store,
        InitOptions(
            advertise_addr=addr,
            hostname=node.hostname,
            default_addr_pool=req.pools,
            subnet_size=req.subnet_size,
            data_path_port=req.data_path_port,
            spec=req.spec,
            engine_version=node.version,
            listen_port=port,
            node_id=role.node_id,
            raft_tick=round(tick_interval() * 1e9),
            resources=host_resources(),
        ),
        ca,
    )
    return created.id, created.subnet


async def _force_new_cluster(node: Node, swarm: Membership) -> str:
    """`swarm init --force-new-cluster`: this manager alone, every committed write kept."""
    old = await node._stop_role()
    force_new_cluster(node.root / "swarm", swarm.node_id)
    ca = old.root_ca if isinstance(old, ManagerRole) else load_root_ca(node._certs)
    role = ManagerRole(node.root, swarm.node_id, root_ca=ca)
    await node._start_manager(role)
    return swarm.node_id


async def join(
    node: Node, remotes: list[str], token: str, advertise_addr: str, availability: str,
    listen_addr: str,
) -> None:
    """`swarm join`: a certificate from the managers, then the role it names."""
    if node.swarm is not None:
        raise Unavailable(ALREADY_IN_SWARM)
    advertise = advertise_address(advertise_addr) if advertise_addr else ""
    result = await join_swarm(remotes, token, node.hostname, advertise, availability,
                              node.version)
    save_node_tls(node._certs, result.tls)
    node.tls = result.tls
    if result.tls.identity.role == "manager":
        node.swarm = Membership(result.node_id, result.subnet, result.addr, "manager",
                                result.managers, node.opts.manager_listen(listen_addr))
        await node._start_manager(await node._joined_manager(result.tls, result.managers))
        node._save_membership(node.swarm)
        log.info("node: joined the swarm as manager node %s", result.node_id)
        return
    node._save_membership(
        Membership(result.node_id, result.subnet, result.addr, "worker", result.managers)
    )
    await node._start_worker()
    session = node.session
    assert session is not None
    with contextlib.suppress(TimeoutError):  # it keeps trying in the background
        await timeouts.wait_for(session.connected.wait(), 10.0)
    log.info("node: joined the swarm as worker node %s", result.node_id)


async def leave(node: Node, force: bool) -> None:
    """`swarm leave`: out of Raft (a manager), every task stopped and purged, the mesh's
    rules removed, the membership and certificates deleted."""
    if node.swarm is None:
        raise Unavailable("This node is not part of a swarm")
    manager = node.manager
    if node.swarm.role == "manager" and not force:
        raise Unavailable(_refusal(manager))
    if node._own_session is not None:
        node._own_session.close()  # assign nothing from now on
    if manager is not None:
        await manager.leave()
        await manager.stop_leading()
    if node.agent is not None:
        await node.agent.stop_all()
    network = node.network
    await node._stop_role(leave=True)
    if network is not None:
        await network.close()
    for record in node.runtime.existing():
        with contextlib.suppress(ShoalError):
            await node.runtime.purge(record.task_id)
    node.swarm, node.tls = None, None
    node.endpoints = EndpointTable()
    shutil.rmtree(node.root / "swarm", ignore_errors=True)
    shutil.rmtree(node._certs, ignore_errors=True)
    log.info("node: left the swarm")


def _refusal(manager: ManagerRole | None) -> str:
    return leave_refusal(manager.raft if manager is not None else None)

"""Swarm init and the cluster object; node updates and removal."""

from __future__ import annotations

from dataclasses import dataclass

from shoal.api.types import (
    ClusterInfo,
    DispatcherConfig,
    JoinTokens,
    ManagerStatus,
    Node,
    NodeDescription,
    NodeSpec,
    NodeStatus,
    OrchestrationConfig,
    RaftConfig,
    Swarm,
    SwarmSpec,
)
from shoal.ca.root import RootCA, join_token
from shoal.errors import InvalidArgument, OutOfSequence
from shoal.manager.allocator.subnets import allocate_subnet, validate_pool
from shoal.manager.controlapi.resolve import resolve
from shoal.manager.state.store import Store, Tx, new_id

__all__ = ["InitOptions", "cluster", "init_swarm", "update_node", "update_swarm"]

SECOND = 1_000_000_000


@dataclass(frozen=True)
class InitOptions:
    advertise_addr: str
    hostname: str
    default_addr_pool: list[str]
    subnet_size: int
    data_path_port: int
    spec: SwarmSpec | None
    engine_version: str


def _spec_defaults(spec: SwarmSpec | None) -> SwarmSpec:
    """Docker's defaults for every field left zero (the docker CLI sends empty sections)."""
    spec = spec or SwarmSpec()
    spec.name = spec.name or "default"
    orch = spec.orchestration or OrchestrationConfig()
    if orch.task_history_retention_limit is None:
        orch.task_history_retention_limit = 5
    spec.orchestration = orch
    raft = spec.raft or RaftConfig()
    raft.snapshot_interval = raft.snapshot_interval or 10000
    raft.keep_old_snapshots = raft.keep_old_snapshots or 0
    raft.log_entries_for_slow_followers = raft.log_entries_for_slow_followers or 500
    raft.election_tick = raft.election_tick or 10
    raft.heartbeat_tick = raft.heartbeat_tick or 1
    spec.raft = raft
    dispatcher = spec.dispatcher or DispatcherConfig()
    dispatcher.heartbeat_period = dispatcher.heartbeat_period or 5 * SECOND
    spec.dispatcher = dispatcher
    ca = dict(spec.ca_config or {})
    ca["NodeCertExpiry"] = ca.get("NodeCertExpiry") or 90 * 24 * 3600 * SECOND
    spec.ca_config = ca
    return spec


async def init_swarm(store: Store, opts: InitOptions, ca: RootCA) -> tuple[Swarm, Node]:
    pools = opts.default_addr_pool or ["10.0.0.0/8"]
    size = opts.subnet_size or 24
    validate_pool(pools, size)
    if not 1024 <= (opts.data_path_port or 4789) <= 49151:
        raise InvalidArgument("data path port must be within 1024-49151")

    def fn(tx: Tx) -> tuple[Swarm, Node]:
        swarm = Swarm(
            id=new_id(),
            spec=_spec_defaults(opts.spec),
            tls_info={"TrustRoot": ca.cert_pem.decode()},
            data_path_port=opts.data_path_port or 4789,
            default_addr_pool=pools,
            subnet_size=size,
            join_tokens=JoinTokens(worker=join_token(ca), manager=join_token(ca)),
        )
        node = Node(
            id=new_id(),
            spec=NodeSpec(role="manager", availability="active"),
            description=NodeDescription(
                hostname=opts.hostname,
                platform={"Architecture": "x86_64", "OS": "linux"},
                engine={"EngineVersion": opts.engine_version},
            ),
            status=NodeStatus(state="ready", addr=opts.advertise_addr),
            manager_status=ManagerStatus(
                leader=True, reachability="reachable", addr=f"{opts.advertise_addr}:2377"
            ),
            subnet=allocate_subnet(pools, size, []),
        )
        tx.create("cluster", swarm)
        tx.create("node", node)
        return swarm, node

    return await store.update(fn)


def cluster(tx: Tx) -> Swarm:
    found = tx.list("cluster")
    assert found, "no cluster object"
    return found[0]  # type: ignore[no-any-return]


async def update_node(store: Store, ref: str, version: int | None, spec: NodeSpec) -> Node:
    def fn(tx: Tx) -> Node:
        node: Node = resolve(tx, "node", ref)
        if version is not None and version != node.version.index:
            raise OutOfSequence("rpc error: code = Unknown desc = update out of sequence")
        if spec.role == "worker" and node.spec.role == "manager":
            managers = tx.find("node", lambda n: n.spec.role == "manager")
            if len(managers) <= 1:
                raise InvalidArgument(
                    "rpc error: code = FailedPrecondition desc = attempting to demote the "
                    "last manager of the swarm"
                )
        node.spec = NodeSpec(
            name=spec.name,
            labels=spec.labels,
            role=spec.role or node.spec.role,
            availability=spec.availability or node.spec.availability,
        )
        tx.update("node", node)
        return node

    return await store.update(fn)


async def update_swarm(store: Store, version: int | None, spec: SwarmSpec) -> ClusterInfo:
    def fn(tx: Tx) -> Swarm:
        swarm = cluster(tx)
        if version is not None and version != swarm.version.index:
            raise OutOfSequence("rpc error: code = Unknown desc = update out of sequence")
        swarm.spec = _spec_defaults(spec)
        tx.update("cluster", swarm)
        return swarm

    return await store.update(fn)

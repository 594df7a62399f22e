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
    Swarm,
    SwarmSpec,
)
from shoal.ca.root import RootCA, join_token
from shoal.errors import InvalidArgument, OutOfSequence
from shoal.manager.allocator.subnets import allocate_subnet, validate_pool
from shoal.manager.controlapi.raft_spec import DEFAULT_TICK, raft_defaults, validate_raft
from shoal.manager.state.store import Store, Tx, new_id

__all__ = [
    "InitOptions",
    "JoinOptions",
    "cluster",
    "heartbeat_period",
    "init_swarm",
    "node_cert_expiry",
    "register_node",
    "update_swarm",
]

SECOND = 1_000_000_000
MIN_CERT_EXPIRY = 3600 * SECOND  # docker's minimum


@dataclass(frozen=True)
class JoinOptions:
    hostname: str
    addr: str
    role: str
    availability: str
    engine_version: str
    resources: dict[str, int] | None = None  # NodeDescription.Resources


@dataclass(frozen=True)
class InitOptions:
    advertise_addr: str
    hostname: str
    default_addr_pool: list[str]
    subnet_size: int
    data_path_port: int
    spec: SwarmSpec | None
    engine_version: str
    listen_port: int = 2377
    node_id: str = ""  # the founding manager's ID, when chosen before (its Raft ID derives from it)
    raft_tick: int = DEFAULT_TICK  # ns; Spec.Raft.TickInterval when the spec leaves it zero
    resources: dict[str, int] | None = None  # NodeDescription.Resources of this host


def _spec_defaults(spec: SwarmSpec | None, raft_tick: int) -> SwarmSpec:
    """Docker's defaults for every field left zero (the docker CLI sends empty sections);
    `raft_tick` (ns) for a zero Raft.TickInterval. Raises InvalidArgument for a Raft spec
    the managers cannot run with."""
    spec = spec or SwarmSpec()
    spec.name = spec.name or "default"
    orch = spec.orchestration or OrchestrationConfig()
    if orch.task_history_retention_limit is None:
        orch.task_history_retention_limit = 5
    spec.orchestration = orch
    spec.raft = raft_defaults(spec.raft, raft_tick)
    validate_raft(spec.raft)
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
    spec = _spec_defaults(opts.spec, opts.raft_tick)

    def fn(tx: Tx) -> tuple[Swarm, Node]:
        swarm = Swarm(
            id=new_id(),
            spec=spec,
            tls_info={"TrustRoot": ca.cert_pem.decode()},
            data_path_port=opts.data_path_port or 4789,
            default_addr_pool=pools,
            subnet_size=size,
            join_tokens=JoinTokens(worker=join_token(ca), manager=join_token(ca)),
        )
        node = Node(
            id=opts.node_id or new_id(),
            spec=NodeSpec(role="manager", availability="active"),
            description=NodeDescription(
                hostname=opts.hostname,
                platform={"Architecture": "x86_64", "OS": "linux"},
                engine={"EngineVersion": opts.engine_version},
                resources=dict(opts.resources) if opts.resources else None,
            ),
            status=NodeStatus(state="ready", addr=opts.advertise_addr),
            manager_status=ManagerStatus(
                leader=True,
                reachability="reachable",
                addr=f"{opts.advertise_addr}:{opts.listen_port}",
            ),
            subnet=allocate_subnet(pools, size, []),
        )
        tx.clusters.create(swarm)
        tx.nodes.create(node)
        return swarm, node

    return await store.update(fn)


async def register_node(store: Store, opts: JoinOptions) -> Node:
    """The Node object of a node that joins: its own slice of the address pool, not ready
    until its first session with a dispatcher."""

    def fn(tx: Tx) -> Node:
        swarm = cluster(tx)
        used = [n.subnet for n in tx.nodes.list()]
        node = Node(
            id=new_id(),
            spec=NodeSpec(role=opts.role, availability=opts.availability or "active"),  # type: ignore[arg-type]
            description=NodeDescription(
                hostname=opts.hostname,
                platform={"Architecture": "x86_64", "OS": "linux"},
                engine={"EngineVersion": opts.engine_version},
                resources=dict(opts.resources) if opts.resources else None,
            ),
            status=NodeStatus(state="unknown", addr=opts.addr),
            subnet=allocate_subnet(
                swarm.default_addr_pool or ["10.0.0.0/8"], swarm.subnet_size or 24, used
            ),
        )
        tx.nodes.create(node)
        return node

    return await store.update(fn)


def heartbeat_period(swarm: Swarm) -> float:
    """Seconds; SwarmSpec.Dispatcher.HeartbeatPeriod (default 5 s)."""
    period = swarm.spec.dispatcher.heartbeat_period if swarm.spec.dispatcher else 0
    return (period or 5 * SECOND) / SECOND


def node_cert_expiry(swarm: Swarm) -> float:
    """Seconds; SwarmSpec.CAConfig.NodeCertExpiry (default 90 days)."""
    value = (swarm.spec.ca_config or {}).get("NodeCertExpiry") or 90 * 24 * 3600 * SECOND
    return int(value) / SECOND


def cluster(tx: Tx) -> Swarm:
    found = tx.clusters.list()
    assert found, "no cluster object"
    return found[0]


async def update_swarm(
    store: Store,
    version: int | None,
    spec: SwarmSpec,
    rotate_worker: bool = False,
    rotate_manager: bool = False,
    ca: RootCA | None = None,
) -> ClusterInfo:
    """Update the spec; rotating a token replaces it at once (the old one joins nobody)."""
    expiry = (spec.ca_config or {}).get("NodeCertExpiry") if isinstance(spec.ca_config, dict) else 0
    if expiry and int(expiry) < MIN_CERT_EXPIRY:
        raise InvalidArgument(
            "rpc error: code = InvalidArgument desc = minimum certificate expiry time is 1h0m0s"
        )
    period = spec.dispatcher.heartbeat_period if spec.dispatcher else 0
    if period and period < 0:
        raise InvalidArgument("heartbeat period must be positive")

    def fn(tx: Tx) -> Swarm:
        swarm = cluster(tx)
        if version is not None and version != swarm.version.index:
            raise OutOfSequence("rpc error: code = Unknown desc = update out of sequence")
        # A zero tick keeps the current one: docker's CLI posts back the spec without it.
        current = swarm.spec.raft.tick_interval if swarm.spec.raft else 0
        swarm.spec = _spec_defaults(spec, current or DEFAULT_TICK)
        if (rotate_worker or rotate_manager) and ca is None:
            raise InvalidArgument("this node cannot rotate join tokens (no root CA key)")
        if rotate_worker and ca is not None:
            swarm.join_tokens.worker = join_token(ca)
        if rotate_manager and ca is not None:
            swarm.join_tokens.manager = join_token(ca)
        tx.clusters.update(swarm)
        return swarm

    return await store.update(fn)

"""Docker Engine API object shapes (API 1.47), used as shoal's internal model too.

One model for the API, the store and the wire, so the API is compatible by construction.
Attributes are snake_case; the JSON names are Docker's (PascalCase, with Docker's irregular
spellings such as `ID`, `TTY` and `DNSConfig` given explicitly). Fields shoal accepts but does
not act on are typed loosely (`Any`) so that bodies from the real docker CLI decode.
Times are RFC 3339 strings; durations are integer nanoseconds, as in Docker's JSON.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec
from msgspec import field

from shoal.api.container import (
    ConfigReference,
    Mount,
    Privileges,
    ResourceRequirements,
    SecretReference,
    Ulimit,
)

__all__ = [
    "ClusterInfo",
    "ContainerSpec",
    "ContainerStatus",
    "DispatcherConfig",
    "Endpoint",
    "EndpointPortConfig",
    "EndpointSpec",
    "GlobalMode",
    "HealthConfig",
    "JoinTokens",
    "ManagerStatus",
    "NetworkAttachmentConfig",
    "Node",
    "NodeDescription",
    "NodeSpec",
    "NodeStatus",
    "OrchestrationConfig",
    "Placement",
    "PortStatus",
    "RaftConfig",
    "ReplicatedMode",
    "RestartPolicy",
    "Service",
    "ServiceMode",
    "ServiceSpec",
    "ServiceStatus",
    "Swarm",
    "SwarmSpec",
    "Task",
    "TaskSpec",
    "TaskStatusInfo",
    "UpdateConfig",
    "UpdateStatus",
    "Version",
]


class _Base(
    msgspec.Struct, rename="pascal", omit_defaults=True, forbid_unknown_fields=True, gc=False
):
    """Docker-shaped struct: PascalCase JSON, defaults omitted, unknown fields refused.

    `gc=False`: instances are not tracked by the cyclic garbage collector (objects of the
    store are trees: a spec never refers back to what holds it), so a manager's full
    collections do not walk every object of its store (they took 55-99 ms with a store of
    ~15,000 secrets, a pause every request waited out).

    Defaults are Go's zero values ("" / 0 / None), because a field equal to its default is
    left out of the JSON and Go clients read a missing field as the zero value. Docker's
    real defaults ("tcp", "ingress", "vip", ...) are filled in by the control API when a
    spec is stored, as dockerd does.
    """


class Version(_Base):
    index: int = 0


# --- services -------------------------------------------------------------------------


class HealthConfig(_Base):
    test: list[str] | None = None
    interval: int = 0
    timeout: int = 0
    retries: int = 0
    start_period: int = 0
    start_interval: int = 0


class ContainerSpec(_Base):
    image: str = ""
    labels: dict[str, str] | None = None
    command: list[str] | None = None
    args: list[str] | None = None
    hostname: str = ""
    env: list[str] | None = None
    dir: str = ""
    user: str = ""
    groups: list[str] | None = None
    privileges: Privileges | None = None
    tty: bool = field(default=False, name="TTY")
    open_stdin: bool = False
    read_only: bool = False
    mounts: list[Mount] | None = None
    stop_signal: str = ""
    stop_grace_period: int | None = None
    health_check: HealthConfig | None = None
    hosts: list[str] | None = None
    dns_config: Any = field(default=None, name="DNSConfig")
    secrets: list[SecretReference] | None = None
    oom_score_adj: int = 0
    configs: list[ConfigReference] | None = None
    isolation: str = ""
    init: bool | None = None
    sysctls: dict[str, str] | None = None
    capability_add: list[str] | None = None
    capability_drop: list[str] | None = None
    ulimits: list[Ulimit] | None = None


class RestartPolicy(_Base):
    condition: Literal["none", "on-failure", "any"] | None = None
    delay: int | None = None
    max_attempts: int = 0
    window: int = 0


class Placement(_Base):
    constraints: list[str] | None = None
    preferences: list[Any] | None = None
    max_replicas: int = 0
    platforms: list[Any] | None = None


class NetworkAttachmentConfig(_Base):
    target: str = ""
    aliases: list[str] | None = None
    driver_opts: dict[str, str] | None = None


class TaskSpec(_Base):
    plugin_spec: Any = None
    container_spec: ContainerSpec | None = None
    network_attachment_spec: Any = None
    resources: ResourceRequirements | None = None
    restart_policy: RestartPolicy | None = None
    placement: Placement | None = None
    force_update: int = 0
    runtime: str = ""
    networks: list[NetworkAttachmentConfig] | None = None
    log_driver: Any = None


class ReplicatedMode(_Base):
    replicas: int | None = None


class GlobalMode(_Base):
    pass


class ServiceMode(_Base):
    replicated: ReplicatedMode | None = None
    global_: GlobalMode | None = field(default=None, name="Global")
    replicated_job: Any = None
    global_job: Any = None


class UpdateConfig(_Base):
    parallelism: int = 0
    delay: int = 0
    failure_action: str = ""
    monitor: int = 0
    max_failure_ratio: float = 0.0
    order: str = ""


class EndpointPortConfig(_Base):
    name: str = ""
    protocol: Literal["", "tcp", "udp", "sctp"] = ""
    target_port: int = 0
    published_port: int = 0
    publish_mode: Literal["", "ingress", "host"] = ""


class EndpointSpec(_Base):
    mode: Literal["", "vip", "dnsrr"] = ""
    ports: list[EndpointPortConfig] | None = None


class ServiceSpec(_Base):
    name: str = ""
    labels: dict[str, str] | None = None
    task_template: TaskSpec = msgspec.field(default_factory=TaskSpec)
    mode: ServiceMode | None = None
    update_config: UpdateConfig | None = None
    rollback_config: UpdateConfig | None = None
    networks: list[NetworkAttachmentConfig] | None = None
    endpoint_spec: EndpointSpec | None = None


class Endpoint(_Base):
    spec: EndpointSpec = msgspec.field(default_factory=EndpointSpec)
    ports: list[EndpointPortConfig] | None = None
    virtual_ips: list[Any] | None = field(default=None, name="VirtualIPs")


class UpdateStatus(_Base):
    state: str = ""
    started_at: str = ""
    completed_at: str = ""
    message: str = ""


class ServiceStatus(_Base):
    running_tasks: int = 0
    desired_tasks: int = 0
    completed_tasks: int = 0


class Service(_Base):
    id: str = field(default="", name="ID")
    version: Version = msgspec.field(default_factory=Version)
    created_at: str = ""
    updated_at: str = ""
    spec: ServiceSpec = msgspec.field(default_factory=ServiceSpec)
    previous_spec: ServiceSpec | None = None
    endpoint: Endpoint = msgspec.field(default_factory=Endpoint)
    update_status: UpdateStatus | None = None
    service_status: ServiceStatus | None = None
    job_status: Any = None
    # shoal: the task template's version (what `_up-to-date` and rollouts compare tasks
    # to): a new number whenever the template changes, the previous spec's number again
    # when it is rolled back to, so the tasks still running it are kept (swarmkit compares
    # the specs themselves)
    spec_version: int = 0
    previous_spec_version: int = 0  # shoal: the version of previous_spec's task template
    # shoal: the X-Registry-Auth of the last create/update that sent one (docker's
    # --with-registry-auth), as swarmkit's PullOptions.RegistryAuth: handed only to the
    # nodes that run the service's tasks, never returned by the API
    registry_auth: str = ""


# --- tasks ----------------------------------------------------------------------------


class ContainerStatus(_Base):
    container_id: str = field(default="", name="ContainerID")
    pid: int = field(default=0, name="PID")
    exit_code: int = 0


class PortStatus(_Base):
    ports: list[EndpointPortConfig] | None = None


class TaskStatusInfo(_Base):
    timestamp: str = ""
    state: str = ""
    message: str = ""
    err: str = ""
    container_status: ContainerStatus | None = None
    port_status: PortStatus | None = None


class Task(_Base):
    id: str = field(default="", name="ID")
    version: Version = msgspec.field(default_factory=Version)
    created_at: str = ""
    updated_at: str = ""
    name: str = ""
    labels: dict[str, str] | None = None
    spec: TaskSpec = msgspec.field(default_factory=TaskSpec)
    service_id: str = field(default="", name="ServiceID")
    slot: int = 0
    node_id: str = field(default="", name="NodeID")
    status: TaskStatusInfo = msgspec.field(default_factory=TaskStatusInfo)
    desired_state: str = ""
    networks_attachments: list[Any] | None = None
    # shoal: the service spec_version this task was created from, its address on the
    # node's bridge, and how many times its slot was restarted before it
    spec_version: int = 0
    address: str = ""
    attempt: int = 0
    service_name: str = ""
    # shoal: TCP target ports that must accept connections before the task gets traffic
    ready_ports: list[int] | None = None


# --- nodes ----------------------------------------------------------------------------


class NodeSpec(_Base):
    name: str = ""
    labels: dict[str, str] | None = None
    role: Literal["", "worker", "manager"] = ""
    availability: Literal["", "active", "pause", "drain"] = ""


class NodeDescription(_Base):
    hostname: str = ""
    platform: dict[str, str] | None = None
    resources: dict[str, Any] | None = None
    engine: dict[str, Any] | None = None
    tls_info: Any = field(default=None, name="TLSInfo")


class NodeStatus(_Base):
    state: Literal["", "unknown", "down", "ready", "disconnected"] = ""
    message: str = ""
    addr: str = ""


class ManagerStatus(_Base):
    leader: bool = False
    reachability: Literal["", "unknown", "unreachable", "reachable"] = ""
    addr: str = ""


class Node(_Base):
    id: str = field(default="", name="ID")
    version: Version = msgspec.field(default_factory=Version)
    created_at: str = ""
    updated_at: str = ""
    spec: NodeSpec = msgspec.field(default_factory=NodeSpec)
    description: NodeDescription = msgspec.field(default_factory=NodeDescription)
    status: NodeStatus = msgspec.field(default_factory=NodeStatus)
    manager_status: ManagerStatus | None = None
    # shoal: this node's slice of the cluster address pool (e.g. "198.19.1.0/24")
    subnet: str = ""
    # shoal: where this node's gossip (endpoint table) listens, "ip:port" (7946 by default)
    gossip_addr: str = ""


# --- swarm ----------------------------------------------------------------------------


class OrchestrationConfig(_Base):
    task_history_retention_limit: int | None = None


class RaftConfig(_Base):
    snapshot_interval: int = 0
    keep_old_snapshots: int | None = None
    log_entries_for_slow_followers: int = 0
    election_tick: int = 0
    heartbeat_tick: int = 0
    # shoal: Raft's tick in nanoseconds (default 100 ms), so every manager counts the ticks
    # above in the same unit; changed by `swarm update --raft-tick`, applied live
    tick_interval: int = 0


class DispatcherConfig(_Base):
    heartbeat_period: int = 0


class SwarmSpec(_Base):
    name: str = ""
    labels: dict[str, str] | None = None
    orchestration: OrchestrationConfig | None = None
    raft: RaftConfig | None = None
    dispatcher: DispatcherConfig | None = None
    ca_config: Any = field(default=None, name="CAConfig")
    encryption_config: Any = None
    task_defaults: Any = None


class JoinTokens(_Base):
    worker: str = ""
    manager: str = ""


class ClusterInfo(_Base):
    id: str = field(default="", name="ID")
    version: Version = msgspec.field(default_factory=Version)
    created_at: str = ""
    updated_at: str = ""
    spec: SwarmSpec = msgspec.field(default_factory=SwarmSpec)
    tls_info: Any = field(default=None, name="TLSInfo")
    root_rotation_in_progress: bool = False
    data_path_port: int = 0
    default_addr_pool: list[str] | None = None
    subnet_size: int = 0


class Swarm(ClusterInfo):
    join_tokens: JoinTokens = msgspec.field(default_factory=JoinTokens)
    # shoal: the gossip keyring (AES-256), primary first; managers rotate it and hand it to
    # every node; never shown by the API (see httpapi/swarm.py)
    network_keys: list[bytes] | None = None
    # shoal: nodes removed with `node rm`: their certificates stay valid until they expire,
    # so the 2377 server refuses them by ID (swarmkit keeps removed nodes for the same end)
    removed_nodes: list[str] | None = None


# --- networks, secrets, configs -----------------------------------------------------------

__all__ += [
    "IPAM",
    "Config",
    "ConfigSpec",
    "IPAMConfig",
    "Network",
    "NetworkSpec",
    "Secret",
    "SecretSpec",
]


class IPAMConfig(_Base):
    subnet: str = ""
    ip_range: str = field(default="", name="IPRange")
    gateway: str = ""
    auxiliary_addresses: dict[str, str] | None = None


class IPAM(_Base):
    driver: str = ""
    config: list[IPAMConfig] | None = None
    options: dict[str, str] | None = None


class NetworkSpec(_Base):
    """The body of `POST /networks/create` (Docker's NetworkCreateRequest), stored as given
    once the control API has filled in the driver and scope."""

    name: str = ""
    check_duplicate: bool | None = None  # sent by API < 1.44 clients; always on in swarm
    driver: str = ""
    scope: str = ""
    internal: bool = False
    attachable: bool = False
    ingress: bool = False
    config_only: bool = False
    config_from: Any = None
    ipam: IPAM | None = field(default=None, name="IPAM")
    enable_ipv4: bool | None = field(default=None, name="EnableIPv4")
    enable_ipv6: bool | None = field(default=None, name="EnableIPv6")
    options: dict[str, str] | None = None
    labels: dict[str, str] | None = None


class Network(_Base):
    """A swarm-scoped network in the store; the API renders it as Docker's NetworkResource
    (`Id`, `Created`, ...)."""

    id: str = field(default="", name="ID")
    version: Version = msgspec.field(default_factory=Version)
    created_at: str = ""
    updated_at: str = ""
    spec: NetworkSpec = msgspec.field(default_factory=NetworkSpec)


class SecretSpec(_Base):
    name: str = ""
    labels: dict[str, str] | None = None
    data: str | None = None  # base64, as Go encodes []byte; never returned by the API
    driver: Any = None
    templating: Any = None


class Secret(_Base):
    id: str = field(default="", name="ID")
    version: Version = msgspec.field(default_factory=Version)
    created_at: str = ""
    updated_at: str = ""
    spec: SecretSpec = msgspec.field(default_factory=SecretSpec)


class ConfigSpec(_Base):
    name: str = ""
    labels: dict[str, str] | None = None
    data: str | None = None  # base64, as Go encodes []byte
    templating: Any = None


class Config(_Base):
    id: str = field(default="", name="ID")
    version: Version = msgspec.field(default_factory=Version)
    created_at: str = ""
    updated_at: str = ""
    spec: ConfigSpec = msgspec.field(default_factory=ConfigSpec)

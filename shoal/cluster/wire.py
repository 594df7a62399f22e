"""The messages of the 2377 channel and their msgpack (de)serializers.

The channel carries opaque bytes (shoal.cluster.rpc, frames); each method's payloads are
msgspec structs encoded as msgpack (no protoc, no generated code). Decoding is strict: a
payload of the wrong shape is refused
before any handler sees it. Task objects travel in the store's own model (shoal.api.types).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import msgspec

from shoal.api.blobs import BlobData
from shoal.api.session import StatusUpdate
from shoal.api.types import Task

__all__ = [
    "BlobData",
    "Empty",
    "HeartbeatResponse",
    "JoinRequest",
    "JoinResponse",
    "LogBatch",
    "LogEntry",
    "LogSubscription",
    "LogsRequest",
    "NetworkPeer",
    "PublishLogsRequest",
    "PublishedPort",
    "RaftRequest",
    "RaftResponse",
    "RenewRequest",
    "RenewResponse",
    "SessionMessage",
    "SessionRequest",
    "StatusRequest",
    "decoder",
    "encoder",
]

T = TypeVar("T", bound=msgspec.Struct)


class Empty(msgspec.Struct):
    pass


class JoinRequest(msgspec.Struct):
    token: str
    csr: bytes
    hostname: str
    addr: str  # the address the node advertises (its IP)
    availability: str = ""
    engine_version: str = ""
    # NodeDescription.Resources of the joining host ({"NanoCPUs", "MemoryBytes"})
    resources: dict[str, int] | None = None


class JoinResponse(msgspec.Struct):
    node_id: str
    cert: bytes  # signed for the CSR of the request
    subnet: str  # this node's slice of the address pool
    managers: list[str]  # "ip:port" of every manager's 2377


class RenewRequest(msgspec.Struct):
    csr: bytes


class RenewResponse(msgspec.Struct):
    cert: bytes


class SessionRequest(msgspec.Struct):
    hostname: str = ""
    addr: str = ""
    gossip_addr: str = ""  # "ip:port" of the node's gossip listener, once it has one
    resources: dict[str, int] | None = None  # NodeDescription.Resources of the host


class PublishedPort(msgspec.Struct, array_like=True):
    service_id: str
    protocol: str
    published: int
    target: int
    mode: str
    # trailing, with defaults: a shorter array from an older manager still decodes
    policy: str = "cluster"  # the service's mesh traffic policy (shoal.mesh.policy)
    health_port: int = 0
    proxy_protocol: bool = False  # PROXY v2 to the task (userspace mesh)
    service_name: str = ""


class NetworkPeer(msgspec.Struct, array_like=True):
    node_id: str
    addr: str  # underlay address
    subnet: str  # task slice
    gossip: str  # "ip:port", "" while unknown


class NetworkService(msgspec.Struct, array_like=True):
    """A service on an overlay network (api/netview.NetService): for the embedded DNS."""

    service_id: str
    name: str
    network_id: str
    vip: str  # "" in dnsrr mode
    aliases: list[str] = []


class SessionMessage(msgspec.Struct):
    """Everything the node must know, sent whole again after each change that concerns it."""

    tasks: list[Task]
    ports: list[PublishedPort]  # every service's published ports (the mesh needs them all)
    managers: list[str]
    heartbeat_period: float  # seconds
    # the cluster network (shoal/manager/netview): overlay peers, gossip keys (primary
    # first), the (node ID, task ID) of every live task, for the endpoint table's reconcile
    peers: list[NetworkPeer] = []
    data_path_port: int = 4789
    network_keys: list[bytes] = []
    live: list[tuple[str, str]] = []
    # exactly the secrets and configs referenced by this node's tasks that have not ended,
    # and the registry credentials (X-Registry-Auth) of those tasks' services, by service ID
    # (shoal/manager/dispatcher/blobs.py); the node keeps them in memory only
    secrets: list[BlobData] = []
    configs: list[BlobData] = []
    registry_auth: dict[str, str] = {}
    services: list[NetworkService] = []  # every service's name and VIP per network (DNS)


class StatusRequest(msgspec.Struct):
    updates: list[StatusUpdate]


class HeartbeatResponse(msgspec.Struct):
    period: float  # seconds until the next heartbeat is expected


class RaftRequest(msgspec.Struct):
    messages: bytes


class RaftResponse(msgspec.Struct):
    messages: bytes = b""


class LogSubscription(msgspec.Struct):
    """LogBroker/ListenSubscriptions, leader -> node: read these tasks' logs for subscription
    `id` and publish them (PublishLogs). Sent again with more tasks while following (the
    node adds them); `close`: stop publishing it (the client went away)."""

    id: str
    tasks: list[str] = []  # the node's tasks in the subscription
    follow: bool = False
    tail: int = -1  # lines per task from the end; -1: all
    since: float = 0.0  # epoch seconds; 0: from the start
    streams: list[str] = []  # empty: both
    close: bool = False


class LogEntry(msgspec.Struct, array_like=True):
    task_id: str
    time: str  # RFC 3339 with nanoseconds, as the shim wrote it
    stream: str  # "stdout" | "stderr"
    text: str  # without its newline


class PublishLogsRequest(msgspec.Struct):
    """LogBroker/PublishLogs, node -> leader (client stream): lines of a subscription;
    `close`: this node sent every line it has (not following)."""

    subscription_id: str
    entries: list[LogEntry] = []
    close: bool = False


class LogsRequest(msgspec.Struct):
    """LogBroker/SubscribeLogs, follower manager -> leader: the lines of these tasks (a
    service's, or one task), from every node."""

    service_id: str = ""
    task_id: str = ""
    follow: bool = False
    tail: int = -1
    since: float = 0.0
    streams: list[str] = []  # empty: both


class LogBatch(msgspec.Struct):
    """An answer of SubscribeLogs: lines (with the node and service of their task, for the
    details), and the nodes whose lines will not come (down, disconnected, too slow)."""

    entries: list[LogEntry] = []
    nodes: dict[str, str] = {}  # task ID -> node ID, for the entries' tasks
    services: dict[str, str] = {}  # task ID -> service ID
    missing: list[str] = []


def encoder() -> Callable[[Any], bytes]:
    return msgspec.msgpack.Encoder().encode


def decoder(kind: type[T]) -> Callable[[bytes | memoryview], T]:
    dec = msgspec.msgpack.Decoder(kind)
    return dec.decode

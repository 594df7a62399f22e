"""Prometheus metrics of one daemon, read from the node when scraped.

`NodeMetrics(node)` owns a dedicated `CollectorRegistry` (never the library's global one:
several daemons may run in one process in tests). Gauges are computed at scrape time by a
custom collector reading the node's store, Raft, dispatcher, gossip and endpoint table;
the one metric that is recorded here as it happens is the API request latency histogram
(`observe_request`). Latencies measured elsewhere are `shoal.api.latency.LatencyRecord`s
kept by their component (the Raft driver's `proposal_latency`, the agent session's
`heartbeat_latency`), exported as histograms. The mesh's per-port traffic counters are read
from the data plane (`traffic()`: one `nft -j list` for the kernel mesh) by `refresh()`,
which the scrape handler awaits; it asks again at most once a second (`TRAFFIC_TTL`).
`node` is read duck-typed (the daemon; observe sits below shoal.node in the import order),
every part may be absent (a worker has no store, no Raft).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from shoal.api.latency import LatencyRecord
from shoal.errors import ShoalError
from shoal.observe.dashboard import mesh

__all__ = ["TRAFFIC_TTL", "NodeMetrics"]

log = logging.getLogger(__name__)
TRAFFIC_TTL = 1.0  # seconds a data plane's traffic counters are reused between scrapes

TASK_STATES = ("new", "pending", "assigned", "accepted", "preparing", "ready", "starting",
               "running", "complete", "shutdown", "failed", "rejected", "remove", "orphaned")


def _gauge(name: str, doc: str, labels: list[str] | None = None) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"shoal_{name}", doc, labels=labels)


def _store_metrics(store: Any) -> Iterator[Metric]:
    view = store.view()
    tasks = view.list("task")
    by_state = Counter(t.status.state for t in tasks)
    states = _gauge("tasks", "Tasks in the store by current state", ["state"])
    for state in sorted(set(TASK_STATES) | set(by_state)):
        states.add_metric([state], by_state.get(state, 0))
    yield states
    services = view.list("service")
    yield _count("services", "Services in the store", len(services))
    desired = _gauge("service_desired_replicas", "Desired tasks per service", ["service"])
    running = _gauge("service_running_replicas", "Running tasks per service", ["service"])
    live = Counter(t.service_id for t in tasks
                   if t.status.state == "running" and t.desired_state == "running")
    for svc in services:
        rep = svc.spec.mode.replicated
        want = rep.replicas if rep is not None else sum(
            1 for n in view.list("node") if n.status.state == "ready")
        desired.add_metric([svc.spec.name], want or 0)
        running.add_metric([svc.spec.name], live.get(svc.id, 0))
    yield desired
    yield running
    yield _count("nodes", "Nodes in the store", len(view.list("node")))
    yield _count("store_index", "Batches applied to this replica's store", store.index)


def _count(name: str, doc: str, value: float) -> GaugeMetricFamily:
    family = _gauge(name, doc)
    family.add_metric([], value)
    return family


def _raft_metrics(raft: Any) -> Iterator[Metric]:
    node = raft.node
    yield _count("raft_term", "Current Raft term", node.term)
    yield _count("raft_leader", "1 if this manager is the Raft leader", int(
        node.leader_id == raft.id))
    yield _count("raft_leader_id", "Raft ID of the leader (0: none known)", node.leader_id)
    yield _count("raft_commit_index", "Highest Raft index known committed", node.committed)
    yield _count("raft_applied_index", "Highest Raft index applied here", node.applied)
    record = getattr(node, "proposal_latency", None)
    if isinstance(record, LatencyRecord):
        yield _histogram("raft_proposal_duration_seconds",
                         "Raft proposals from propose to applied on this leader", record)


def _histogram(name: str, doc: str, record: LatencyRecord) -> HistogramMetricFamily:
    return HistogramMetricFamily(f"shoal_{name}", doc, buckets=record.cumulative(),
                                 sum_value=record.sum)


def _session_metrics(node: Any) -> Iterator[Metric]:
    cluster = getattr(node, "cluster", None)
    dispatcher = getattr(cluster, "dispatcher", None)
    if dispatcher is not None:
        leading = dispatcher.leading
        yield _count("dispatcher_sessions", "Agent sessions the leading dispatcher serves now",
                     getattr(dispatcher, "open_sessions", 0) if leading else 0)
        yield _count("dispatcher_nodes_tracked",
                     "Nodes whose heartbeats the leading dispatcher expects",
                     len(dispatcher.liveness.tracked()) if leading else 0)
    session = getattr(getattr(node, "agent", None), "session", None)
    record = getattr(session, "heartbeat_latency", None)
    if isinstance(record, LatencyRecord):
        yield _histogram("heartbeat_duration_seconds",
                         "Round trips of this node's heartbeats to the leading dispatcher",
                         record)


def _gossip_metrics(gossip: Any) -> Iterator[Metric]:
    members = Counter(m.status.value for m in gossip.members())
    family = _gauge("gossip_members", "Other gossip members by state", ["state"])
    for state in ("alive", "suspect", "dead", "left"):
        family.add_metric([state], members.get(state, 0))
    yield family


def _mesh_metrics(node: Any, traffic: dict[tuple[str, int], Any]) -> Iterator[Metric]:
    labels = ["protocol", "published_port"]
    total = _gauge("mesh_backends", "Tasks behind each published port", labels)
    ready = _gauge("mesh_backends_ready",
                   "Ready tasks behind each published port (the endpoint table)", labels)
    for port in mesh(node):
        key = [port["protocol"], str(port["published"])]
        total.add_metric(key, len(port["backends"]))
        ready.add_metric(key, sum(1 for b in port["backends"] if b["ready"]))
    yield total
    yield ready
    flows = CounterMetricFamily("shoal_mesh_connections",
                                "Connections (UDP: flows) the mesh routed through each "
                                "published port on this node", labels=labels)
    octets = CounterMetricFamily("shoal_mesh_bytes",
                                 "Bytes (both directions) the mesh routed through each "
                                 "published port on this node", labels=labels)
    for (proto, published), counts in sorted(traffic.items()):
        flows.add_metric([proto, str(published)], counts.connections)
        octets.add_metric([proto, str(published)], counts.bytes)
    yield flows
    yield octets


class _NodeCollector(Collector):
    def __init__(self, node: Any) -> None:
        self._node = node
        self.traffic: dict[tuple[str, int], Any] = {}  # the last data plane reading

    def collect(self) -> Iterator[Metric]:
        node = self._node
        yield _count("manager", "1 if this node holds the manager role",
                     int(node.store is not None))
        if node.store is not None:
            yield from _store_metrics(node.store)
        if getattr(node, "raft", None) is not None:
            yield from _raft_metrics(node.raft)
        yield from _session_metrics(node)
        network = getattr(node, "network", None)
        if network is not None and getattr(network, "gossip", None) is not None:
            yield from _gossip_metrics(network.gossip)
        yield from _mesh_metrics(node, self.traffic)


class NodeMetrics:
    """The daemon's registry: scrape-time gauges plus the API latency histogram."""

    def __init__(self, node: Any, clock: Callable[[], float] = time.monotonic) -> None:
        self._node = node
        self._clock = clock
        self._read_at: float | None = None
        self._collector = _NodeCollector(node)
        self.registry = CollectorRegistry()
        self.registry.register(self._collector)
        self.api_latency = Histogram(
            "shoal_api_request_duration_seconds", "Engine API request latency",
            ["method", "route"], registry=self.registry)

    def observe_request(self, method: str, route: str, seconds: float) -> None:
        self.api_latency.labels(method, route).observe(seconds)

    async def refresh(self) -> None:
        """Read the data plane's traffic counters, unless read less than TRAFFIC_TTL ago."""
        now = self._clock()
        if self._read_at is not None and now - self._read_at < TRAFFIC_TTL:
            return
        self._read_at = now
        plane = getattr(getattr(self._node, "network", None), "plane", None)
        reader = getattr(plane, "traffic", None)
        if reader is None:
            self._collector.traffic = {}
            return
        try:
            self._collector.traffic = await reader()
        except ShoalError as exc:  # e.g. nft gone: the other metrics still serve
            log.warning("metrics: no mesh traffic counters: %s", exc)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

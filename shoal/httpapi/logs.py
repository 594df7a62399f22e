"""Task logs as Docker's multiplexed stream: 8-byte frame headers, one line per frame.

Each line reads `[<RFC3339Nano> ]<details> <message>` where details are the sorted
`com.docker.swarm.{node,service,task}.id=...` pairs the docker CLI uses to name the task.

The lines come from every node (shoal.manager.logbroker): on the leader from its broker, on
a follower relayed from the leader's (`LogBroker/SubscribeLogs` on 2377). A manager without
a broker (no 2377 served) reads its own tasks' files, as before. Without `follow` the lines
are sorted by time; nodes whose lines could not be had end the stream with docker's
"incomplete log stream" warning (a system-error frame, which the CLI prints). With `follow`
lines are written as they come, new tasks of the service included.
"""
from __future__ import annotations

import struct
from collections.abc import AsyncIterator

from aiohttp import web

from shoal.agent.log_publisher import SubscriptionReader
from shoal.api.types import Task
from shoal.cluster.client import ClusterClient
from shoal.cluster.wire import LogBatch, LogEntry, LogsRequest, LogSubscription
from shoal.errors import InvalidArgument, Unavailable
from shoal.httpapi.common import query_bool
from shoal.httpapi.node_api import LocalNode
from shoal.manager.logbroker import missing_warning
from shoal.manager.state.store import Store

__all__ = ["frame", "stream_logs"]

_STREAMS = {"stdout": 1, "stderr": 2}
SYSTEMERR = 3


def frame(stream: int, payload: bytes) -> bytes:
    return struct.pack(">BxxxL", stream, len(payload)) + payload


def _details(node_id: str, service_id: str, task_id: str) -> str:
    return ",".join(
        [
            f"com.docker.swarm.node.id={node_id}",
            f"com.docker.swarm.service.id={service_id}",
            f"com.docker.swarm.task.id={task_id}",
        ]
    )


async def stream_logs(
    request: web.Request, daemon: LocalNode, service_id: str = "", task_id: str = ""
) -> web.StreamResponse:
    store = daemon.require_manager()
    follow = query_bool(request, "follow")
    timestamps = query_bool(request, "timestamps")
    details = query_bool(request, "details")
    want = [s for s in ("stdout", "stderr") if query_bool(request, s)] or ["stdout", "stderr"]
    tail_text = request.query.get("tail", "all")
    try:
        tail = -1 if tail_text in ("", "all") else int(tail_text)
    except ValueError:
        raise InvalidArgument(f"invalid tail value {tail_text!r}") from None
    if tail < -1:
        tail = -1
    since_text = request.query.get("since") or "0"
    try:
        since = float(since_text)  # the API's "seconds[.nanoseconds]" since the epoch
    except ValueError:
        raise InvalidArgument(f"invalid since value {since_text!r}") from None
    req = LogsRequest(service_id, task_id, follow, tail, since, want)
    batches = _source(daemon, store, req)

    response = web.StreamResponse(
        headers={"Content-Type": "application/vnd.docker.multiplexed-stream"}
    )
    await response.prepare(request)

    def encode(batch: LogBatch, entry: LogEntry) -> bytes:
        prefix = f"{entry.time} " if timestamps else ""
        extra = ""
        if details:
            node = batch.nodes.get(entry.task_id, "")
            service = batch.services.get(entry.task_id, "")
            extra = _details(node, service, entry.task_id) + " "
        return frame(_STREAMS.get(entry.stream, 1), f"{prefix}{extra}{entry.text}\n".encode())

    missing: list[str] = []
    backlog: list[tuple[str, bytes]] = []
    try:
        async for batch in batches:
            missing.extend(n for n in batch.missing if n not in missing)
            if follow:
                for entry in batch.entries:
                    await response.write(encode(batch, entry))
            else:
                backlog.extend((e.time, encode(batch, e)) for e in batch.entries)
    finally:
        aclose = getattr(batches, "aclose", None)
        if aclose is not None:
            await aclose()  # the subscription ends everywhere now (the client may be gone)
    backlog.sort(key=lambda item: item[0])
    for _, chunk in backlog:
        await response.write(chunk)
    if missing:
        warning = f"Error grabbing logs: {missing_warning(missing)}\n"
        await response.write(frame(SYSTEMERR, warning.encode()))
    await response.write_eof()
    return response


def _source(daemon: LocalNode, store: Store, req: LogsRequest) -> AsyncIterator[LogBatch]:
    """The lines, from the leader's broker: here, or relayed from the leader. What can be
    refused is refused here, before the answer's status is sent."""
    cluster = daemon.cluster
    if cluster is None or daemon.tls is None:
        return _local(daemon, store, req)
    raft = daemon.raft
    if raft is None or raft.is_leader:
        if not cluster.dispatcher.leading:
            raise Unavailable("this manager is not leading yet: try again")
        return cluster.logs.subscribe(req)
    addr = _leader_addr(store)
    if not addr:
        raise Unavailable("no leader to read the logs through")
    return _relay(ClusterClient(addr, daemon.tls.ca_pem, daemon.tls), req)


async def _relay(client: ClusterClient, req: LogsRequest) -> AsyncIterator[LogBatch]:
    try:
        async for batch in client.stream("LogBroker/SubscribeLogs", req, LogBatch):
            yield batch
    finally:
        await client.close()


def _leader_addr(store: Store) -> str:
    for node in store.view().list("node"):
        status = node.manager_status
        if status is not None and status.leader and status.addr:
            return str(status.addr)
    return ""


async def _local(daemon: LocalNode, store: Store, req: LogsRequest) -> AsyncIterator[LogBatch]:
    """This node's own tasks only (a manager that serves no 2377)."""
    view = store.view()
    if req.task_id:
        found = view.tasks.get(req.task_id)
        tasks: list[Task] = [found] if found is not None else []
    else:
        tasks = view.tasks.find(lambda t: t.service_id == req.service_id)
    mine = [t for t in tasks if t.node_id == (daemon.swarm.node_id if daemon.swarm else "")]
    sub = LogSubscription("local", [t.id for t in mine], req.follow, req.tail, req.since,
                          list(req.streams))  # fmt: skip
    nodes = {t.id: t.node_id for t in mine}
    services = {t.id: t.service_id for t in mine}
    async for entries in SubscriptionReader(sub, daemon.runtime.log_path).batches():
        yield LogBatch(entries, nodes, services)

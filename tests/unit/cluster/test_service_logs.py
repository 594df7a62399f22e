"""`service logs` / `task logs` bring every node's lines through the leader (a manager and
two workers in one process): all tasks, `tail` per task, `follow` with a line written after
it started, stdout and stderr as separate streams, the details; a worker that stops
listening is missing (a warning, never a hang); a client that goes away ends the
subscription on every node."""

from __future__ import annotations

import json
import struct
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from shoal import timeouts
from shoal.manager.logbroker import LogBroker
from tests.polling import eventually
from tests.unit.cluster.nodes import TestNode, V, manager_and_workers


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[list[TestNode]]:
    async with manager_and_workers(tmp_path) as nodes:
        yield nodes


def broker(node: TestNode) -> LogBroker:
    assert node.daemon.cluster is not None
    return node.daemon.cluster.logs


def frames(raw: bytes) -> list[tuple[int, str]]:
    out = []
    while raw:
        stream, length = struct.unpack(">BxxxL", raw[:8])
        out.append((stream, raw[8 : 8 + length].decode()))
        raw = raw[8 + length :]
    return out


def append(node: TestNode, task_id: str, stream: str, text: str, second: int) -> None:
    path = node.runtime.log_path(task_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = {"time": f"2026-01-01T00:00:{second:02d}.000000000Z", "stream": stream, "log": text}
    with path.open("a") as fh:
        fh.write(json.dumps(line) + "\n")


async def global_service(cluster: list[TestNode]) -> tuple[str, dict[str, dict[str, Any]]]:
    manager = cluster[0]
    spec = {
        "Name": "talk",
        "TaskTemplate": {"ContainerSpec": {"Image": "shoal", "Args": ["sleep"]}},
        "Mode": {"Global": {}},
    }
    sid = (await manager.call("POST", "/services/create", spec, expect=201))["ID"]
    nodes = {n["ID"]: host for host, n in (await manager.nodes()).items()}

    async def running() -> dict[str, dict[str, Any]] | None:
        tasks = [t for t in await manager.tasks(sid) if t["Status"]["State"] == "running"]
        by_host = {nodes[t["NodeID"]]: t for t in tasks}
        return by_host if len(by_host) == 3 else None

    by_host = await eventually(running, timeout=30)
    # every node listens for log subscriptions (its session is up)
    await eventually(lambda: broker(manager).listening() >= {
        n["NodeID"] for h, n in by_host.items() if h != "m1"})  # fmt: skip
    return sid, by_host


async def test_every_nodes_lines_come_with_tail_streams_and_details(
    cluster: list[TestNode],
) -> None:
    manager = cluster[0]
    sid, by_host = await global_service(cluster)
    for second, node in enumerate(cluster):
        task = by_host[node.daemon.hostname]
        append(node, task["ID"], "stderr", f"oops on {node.daemon.hostname}", 10 + second)

    resp = await manager.client.get(f"{V}/services/{sid}/logs",
                                    params={"stdout": "1", "stderr": "1", "details": "1"})
    assert resp.status == 200
    got = frames(await resp.read())
    texts = [t.split(" ", 1)[1] for _, t in got]
    for host in ("m1", "w1", "w2"):
        task = by_host[host]
        assert f"hello from talk.{task['NodeID']}\n" in texts  # the fake's line
        assert (2, f"oops on {host}\n") in [(s, t.split(" ", 1)[1]) for s, t in got]
        detail = (f"com.docker.swarm.node.id={task['NodeID']},"
                  f"com.docker.swarm.service.id={sid},com.docker.swarm.task.id={task['ID']}")
        assert sum(t.startswith(detail + " ") for _, t in got) == 2
    assert len(got) == 6
    # sorted by time: the fake's lines (00:00:00) first, then m1, w1, w2
    assert [t.split(" ", 1)[1] for _, t in got[3:]] == [
        "oops on m1\n", "oops on w1\n", "oops on w2\n"]  # fmt: skip

    # tail per task: the last line of each of the three tasks
    resp = await manager.client.get(f"{V}/services/{sid}/logs",
                                    params={"stdout": "1", "stderr": "1", "tail": "1"})
    assert sorted(t for _, t in frames(await resp.read())) == [
        "oops on m1\n", "oops on w1\n", "oops on w2\n"]  # fmt: skip
    # stdout only
    resp = await manager.client.get(f"{V}/services/{sid}/logs", params={"stdout": "1"})
    assert {s for s, _ in frames(await resp.read())} == {1}
    # one task on a worker, by its ID
    w2_task = by_host["w2"]["ID"]
    resp = await manager.client.get(f"{V}/tasks/{w2_task}/logs",
                                    params={"stdout": "1", "stderr": "1", "timestamps": "1"})
    assert [t for _, t in frames(await resp.read())] == [
        f"2026-01-01T00:00:00.000000000Z hello from talk.{by_host['w2']['NodeID']}\n",
        "2026-01-01T00:00:12.000000000Z oops on w2\n",
    ]
    assert not broker(manager).subscriptions  # every subscription ended


async def test_follow_sees_new_lines_and_a_closed_client_ends_it_everywhere(
    cluster: list[TestNode],
) -> None:
    manager, w1, w2 = cluster
    sid, by_host = await global_service(cluster)
    resp = await manager.client.get(f"{V}/services/{sid}/logs",
                                    params={"stdout": "1", "follow": "1", "tail": "0"})
    assert resp.status == 200
    await eventually(lambda: len(broker(manager).subscriptions) == 1)
    publishers = [w.daemon.role.session.logs for w in (w1, w2)]  # type: ignore[union-attr]
    await eventually(lambda: all(p.running for p in publishers))
    append(w2, by_host["w2"]["ID"], "stdout", "written after the start", 30)
    append(manager, by_host["m1"]["ID"], "stdout", "and on the leader", 31)
    seen = b""

    async def both() -> bool:
        nonlocal seen
        seen += await resp.content.read(4096)
        return b"written after the start\n" in seen and b"and on the leader\n" in seen

    await eventually(both, timeout=20)
    assert b"hello from" not in seen  # tail 0: nothing from before
    resp.close()
    await eventually(lambda: not broker(manager).subscriptions, timeout=20)
    await eventually(lambda: not any(p.running for p in publishers), timeout=20)


async def test_a_node_not_listening_is_missing_with_a_warning(cluster: list[TestNode]) -> None:
    manager, _, w2 = cluster
    sid, by_host = await global_service(cluster)
    session = w2.daemon.role.session  # type: ignore[union-attr]
    session.logs = None  # w2 stops serving log subscriptions at its next session
    assert session._client is not None
    await session._client.close()  # the session reconnects, without the listener
    w2_id = by_host["w2"]["NodeID"]
    await eventually(lambda: w2_id not in broker(manager).listening(), timeout=20)
    resp = await timeouts.wait_for(  # bounded: the missing node is not waited on
        manager.client.get(f"{V}/services/{sid}/logs", params={"stdout": "1"}), 20
    )
    got = frames(await resp.read())
    assert [s for s, _ in got].count(1) == 2  # m1's and w1's lines
    stream, text = got[-1]
    assert stream == 3 and "incomplete log stream" in text and w2_id in text


async def test_asked_on_a_worker_is_refused_as_docker_does(cluster: list[TestNode]) -> None:
    w1 = cluster[1]
    sid, _ = await global_service(cluster)
    err = await w1.call("GET", f"/services/{sid}/logs", expect=503, stdout="1")
    assert "This node is not a swarm manager" in err["message"]


@pytest.fixture
async def managers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[list[TestNode]]:
    monkeypatch.setenv("SHOAL_RAFT_TICK_MS", "20")
    nodes = [TestNode(tmp_path / f"m{i}", f"m{i}") for i in (1, 2, 3)]
    try:
        for n in nodes:
            await n.start()
        await nodes[0].init()
        token = (await nodes[0].tokens())["Manager"]
        for n in nodes[1:]:
            await n.join(nodes[0], token=token)

        async def ready() -> bool:
            found = await nodes[0].nodes()
            return len(found) == 3 and all(n["Status"]["State"] == "ready" for n in found.values())

        await eventually(ready, timeout=20)
        yield nodes
    finally:
        for n in nodes:
            await n.stop()


async def test_asked_on_a_follower_every_managers_lines_come_through_the_leader(
    managers: list[TestNode],
) -> None:
    spec = {"Name": "talk", "Mode": {"Global": {}},
            "TaskTemplate": {"ContainerSpec": {"Image": "shoal", "Args": ["sleep"]}}}
    leader = next(n for n in managers if n.daemon.raft is not None and n.daemon.raft.is_leader)
    followers = [n for n in managers if n is not leader]
    sid = (await leader.call("POST", "/services/create", spec, expect=201))["ID"]

    async def running() -> bool:
        tasks = await leader.tasks(sid)
        return sum(t["Status"]["State"] == "running" for t in tasks) == 3

    await eventually(running, timeout=30)
    ids = {n.daemon.swarm.node_id for n in followers if n.daemon.swarm is not None}
    await eventually(lambda: broker(leader).listening() >= ids, timeout=20)
    for follower in followers:
        resp = await follower.client.get(f"{V}/services/{sid}/logs", params={"stdout": "1"})
        assert resp.status == 200
        got = sorted(t for _, t in frames(await resp.read()))
        assert len(got) == 3 and all(t.startswith("hello from talk.") for t in got), got
        assert not any(s == 3 for s, _ in frames(await resp.read()))
    assert not broker(leader).subscriptions

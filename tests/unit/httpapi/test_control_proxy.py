"""A follower's write handlers proxy their control API call to the leader (shoal.httpapi.
control): the leader runs it with no HTTP, and the client gets what a call on the leader
gives, errors included (status, message); NotLeader, ElectedHere and replays as promised."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from aiohttp.test_utils import TestClient, TestServer

from shoal.cluster.forward import (
    CONTROL_METHOD,
    ERROR_HEADER,
    FORWARDED_HEADER,
    NOT_LEADER_HEADER,
    ForwardRequest,
    ForwardResponse,
)
from shoal.errors import Unavailable
from shoal.httpapi import control
from shoal.httpapi.app import _build_app
from shoal.manager.raft.errors import NotLeader
from shoal.manager.raft_role import ElectedHere
from tests.unit.httpapi.conftest import INIT, Api, V, make_daemon


class NotLeaderStore:
    """A follower's store: every write meets NotLeader (reads are never made here)."""

    async def update(self, fn: Any) -> Any:
        raise NotLeader("raft: not the leader", 2)


class LeaderLink:
    """The follower's Raft: leader 2, reached by calling the leader's API executor (what
    `Control/ForwardStream` runs there); records what went, and can fail on demand."""

    def __init__(self, leader: Api) -> None:
        self.id, self.leader_id = 1, 2
        self.leader = leader
        self.sent: list[ForwardRequest] = []
        self.fail: Exception | None = None
        self.node: Any = None

    @property
    def is_leader(self) -> bool:
        return self.leader_id == self.id

    async def await_own_leadership(self) -> bool:
        return self.is_leader

    async def barrier(self) -> None:
        pass

    async def forward(self, req: ForwardRequest) -> ForwardResponse:
        self.sent.append(req)
        if self.fail is not None:
            raise self.fail
        executor = self.leader.daemon.api_executor
        assert executor is not None
        return await executor(req)


class FollowerNode:
    """The leader's node seen through a follower's eyes: its own Raft and store."""

    def __init__(self, leader: Api, raft: LeaderLink) -> None:
        self._leader = leader.daemon
        self.raft = raft
        self.store: Any = NotLeaderStore()
        raft.node = self

    def require_manager(self) -> Any:
        return self.store

    def __getattr__(self, name: str) -> Any:
        return getattr(self._leader, name)


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[tuple[Api, TestClient, LeaderLink]]:
    from shoal.httpapi.app import make_app

    daemon, runtime = make_daemon(tmp_path)
    lead_client = TestClient(TestServer(make_app(daemon)))
    await lead_client.start_server()
    leader = Api(daemon, lead_client, runtime)
    await leader.call("POST", "/swarm/init", INIT)
    link = LeaderLink(leader)
    follower = TestClient(TestServer(_build_app(FollowerNode(leader, link))))  # type: ignore[arg-type]
    await follower.start_server()
    try:
        yield leader, follower, link
    finally:
        await follower.close()
        await lead_client.close()
        await daemon.shutdown()


async def _ask(client: TestClient, method: str, path: str, body: Any = None,
               **params: str) -> tuple[int, Any]:
    resp = await client.request(method, V + path, json=body, params=params)
    text = await resp.text()
    return resp.status, json.loads(text) if text else None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _service(name: str, **more: Any) -> dict[str, Any]:
    return {"Name": name, "TaskTemplate": {"ContainerSpec": {"Image": "shoal"}}, **more}


async def test_writes_through_a_follower_are_control_calls_run_on_the_leader(
    pair: tuple[Api, TestClient, LeaderLink],
) -> None:
    leader, follower, link = pair
    status, created = await _ask(follower, "POST", "/secrets/create",
                                 {"Name": "s1", "Data": _b64(b"x"), "Labels": {"a": "1"}})
    assert status == 201 and set(created) == {"ID"}
    secret = await leader.get(f"/secrets/{created['ID']}")
    assert secret["Spec"] == {"Name": "s1", "Labels": {"a": "1"}}
    version = secret["Version"]["Index"]
    status, _ = await _ask(follower, "POST", f"/secrets/{created['ID']}/update",
                           {"Name": "s1", "Labels": {"b": "2"}}, version=str(version))
    assert status == 200
    assert (await leader.get("/secrets/s1"))["Spec"]["Labels"] == {"b": "2"}

    status, svc = await _ask(follower, "POST", "/services/create", _service("web"))
    assert status == 201 and svc["Warnings"] is None
    spec = (await leader.get("/services/web"))["Version"]["Index"]
    status, answer = await _ask(follower, "POST", "/services/web/update",
                                _service("web", Labels={"x": "y"}), version=str(spec))
    assert (status, answer) == (200, {"Warnings": None})
    assert (await leader.get("/services/web"))["Spec"]["Labels"] == {"x": "y"}

    status, net = await _ask(follower, "POST", "/networks/create",
                             {"Name": "backend", "Driver": "overlay"})
    assert status == 201 and net["Warning"] == "" and net["Id"]
    node = (await leader.get("/nodes"))[0]
    status, _ = await _ask(follower, "POST", f"/nodes/{node['ID']}/update",
                           {**node["Spec"], "Labels": {"zone": "a"}},
                           version=str(node["Version"]["Index"]))
    assert status == 200
    assert (await leader.get(f"/nodes/{node['ID']}"))["Spec"]["Labels"] == {"zone": "a"}

    for method, path, expect in (("DELETE", "/services/web", 200),
                                 ("DELETE", "/networks/backend", 204),
                                 ("DELETE", "/secrets/s1", 204)):
        status, _ = await _ask(follower, method, path)
        assert status == expect, path
    assert await leader.get("/services") == [] and await leader.get("/secrets") == []
    ops = [(r.method, r.path, r.headers) for r in link.sent]
    assert ops == [(CONTROL_METHOD, op, []) for op in (
        "secret.create", "secret.update", "service.create", "service.update",
        "network.create", "node.update", "service.remove", "network.remove", "secret.remove")]


@pytest.mark.parametrize("method,path,body,params", [
    ("POST", "/secrets/create", {"Name": "taken", "Data": _b64(b"x")}, {}),  # Conflict
    ("POST", "/secrets/create", {"Name": "bad name!", "Data": _b64(b"x")}, {}),
    ("POST", "/configs/create", {"Name": "c", "Data": "not base64!"}, {}),
    ("POST", "/secrets/taken/update", {"Name": "taken", "Labels": {}}, {"version": "999"}),
    ("POST", "/secrets/taken/update", {"Name": "taken"}, {}),  # no version
    ("POST", "/secrets/nothere/update", {"Name": "x"}, {"version": "1"}),  # NotFound
    ("DELETE", "/secrets/taken", None, {}),  # in use by a service
    ("DELETE", "/configs/nothere", None, {}),
    ("POST", "/services/create", _service("web"), {}),  # the name is taken
    ("POST", "/services/create", {"Name": "x"}, {}),  # no container spec
    ("POST", "/services/web/update", _service("web"), {"version": "1"}),  # out of sequence
    ("DELETE", "/services/nothere", None, {}),
    ("POST", "/networks/create", {"Name": "n", "Driver": "bridge"}, {}),
    ("DELETE", "/networks/ingress", None, {}),
    ("POST", "/nodes/nothere/update", {"Role": "worker", "Availability": "active"},
     {"version": "1"}),
    ("POST", "/secrets/create", "not an object", {}),  # decoded by the follower's handler
])
async def test_errors_through_a_follower_are_the_leaders_own(
    pair: tuple[Api, TestClient, LeaderLink], method: str, path: str, body: Any,
    params: dict[str, str],
) -> None:
    leader, follower, _link = pair
    created = await leader.call("POST", "/secrets/create",
                                {"Name": "taken", "Data": _b64(b"x")}, expect=201)
    await leader.call("POST", "/services/create", _service("web", TaskTemplate={
        "ContainerSpec": {"Image": "shoal", "Secrets": [{
            "SecretID": created["ID"], "SecretName": "taken",
            "File": {"Name": "taken", "UID": "0", "GID": "0", "Mode": 292}}]}}), expect=201)
    here = await _ask(leader.client, method, path, body, **params)
    there = await _ask(follower, method, path, body, **params)
    assert here[0] >= 400, here
    assert there == here


async def test_not_leader_on_the_leader_answers_as_a_replay_does(tmp_path: Path) -> None:
    class Follower:
        raft = None

        def require_manager(self) -> NotLeaderStore:
            return NotLeaderStore()

    run = control.runner(Follower())  # type: ignore[arg-type]
    args = msgspec.msgpack.encode(({"Name": "s", "Data": _b64(b"x")},))
    answer = await run(ForwardRequest(CONTROL_METHOD, "secret.create", [], args))
    assert answer.status == 503 and (NOT_LEADER_HEADER, "1") in answer.headers
    # the follower's RaftRole.forward retries such an answer on the next leader
    from shoal.manager.raft_role import _not_leader
    assert _not_leader(answer)


@pytest.mark.parametrize("path,body,message", [
    ("secret.nuke", b"\x90", "unknown control call 'secret.nuke'"),
    ("secret.create", b"\xc1", "control call secret.create: bad arguments"),
    ("secret.create", msgspec.msgpack.encode(("not a spec",)), "bad arguments"),
])
async def test_bad_calls_are_refused(path: str, body: bytes, message: str) -> None:
    class Leader:
        raft = None

        def require_manager(self) -> NotLeaderStore:
            raise AssertionError("a refused call reaches no store")

    answer = await control.runner(Leader())(  # type: ignore[arg-type]
        ForwardRequest(CONTROL_METHOD, path, [], body))
    assert answer.status == 400 and (ERROR_HEADER, "InvalidArgument") in answer.headers
    assert message in answer.body.decode()


async def test_elected_here_runs_the_call_here_and_a_replay_never_proxies(
    pair: tuple[Api, TestClient, LeaderLink],
) -> None:
    leader, follower, link = pair
    link.fail = ElectedHere("raft: this manager leads now")
    link.node.store = leader.daemon.store  # elected: its store takes writes now
    status, created = await _ask(follower, "POST", "/secrets/create",
                                 {"Name": "s", "Data": _b64(b"x")})
    assert status == 201 and (await leader.get(f"/secrets/{created['ID']}"))["Spec"]["Name"] == "s"
    assert [r.method for r in link.sent] == [CONTROL_METHOD]
    link.fail, link.sent = None, []
    link.node.store = NotLeaderStore()
    resp = await follower.post(V + "/secrets/create", json={"Name": "r", "Data": _b64(b"x")},
                               headers={FORWARDED_HEADER: "1"})
    assert resp.status == 503 and resp.headers[NOT_LEADER_HEADER] == "1"
    assert link.sent == []  # a replay runs its call where it is, or is refused


async def test_a_lost_answer_is_unavailable_like_a_timeout(
    pair: tuple[Api, TestClient, LeaderLink],
) -> None:
    _leader, follower, link = pair
    link.fail = Unavailable("manager 198.18.0.12:2377: forward timed out")
    status, body = await _ask(follower, "POST", "/services/create", _service("web"))
    assert (status, body) == (503, {"message": "manager 198.18.0.12:2377: forward timed out"})
    assert len(link.sent) == 1


async def test_a_follower_that_knows_no_leader_replays_the_request(
    pair: tuple[Api, TestClient, LeaderLink],
) -> None:
    leader, follower, link = pair
    link.leader_id = 0  # the handler's call runs here, meets NotLeader: the whole request goes
    status, created = await _ask(follower, "POST", "/secrets/create",
                                 {"Name": "s", "Data": _b64(b"x")})
    assert status == 201 and (await leader.get(f"/secrets/{created['ID']}"))["Spec"]["Name"] == "s"
    [req] = link.sent
    assert (req.method, req.path) == ("POST", V + "/secrets/create")

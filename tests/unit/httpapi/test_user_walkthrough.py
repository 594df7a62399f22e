"""What a swarm user met on a real lab (session 12, docs/design/user-walkthrough.md),
replayed against an in-process node: the bodies the docker CLI sends, dockerd's answers."""

from __future__ import annotations

import re
from collections.abc import Awaitable
from typing import Any

from shoal.api.types import ManagerStatus, Node, NodeSpec
from shoal.manager.state.store import Tx
from tests.polling import eventually
from tests.unit.httpapi.conftest import Api


async def _equal(got: Awaitable[Any], want: Any) -> bool:
    return await got == want


def spec(name: str = "", **task: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "TaskTemplate": {"ContainerSpec": {"Image": "shoal", "Args": ["whoami"]}, **task},
        "Mode": {"Replicated": {"Replicas": 1}},
    }
    if name:
        body["Name"] = name
    return body


async def test_a_service_created_without_a_name_gets_dockers_random_one(api: Api) -> None:
    # `docker service create IMAGE` sends no Name; dockerd makes up `adjective_surname`
    first = await api.call("POST", "/services/create", spec(), expect=201)
    second = await api.call("POST", "/services/create", spec(), expect=201)
    names = [(await api.get(f"/services/{c['ID']}"))["Spec"]["Name"] for c in (first, second)]
    for name in names:
        assert re.fullmatch(r"[a-z]+_[a-z]+", name), name
    assert (await api.get(f"/services/{names[0]}"))["ID"] == first["ID"]


async def test_a_demoted_node_out_of_raft_has_no_manager_status(api: Api) -> None:
    # `docker node demote h2` then `docker node ls`: MANAGER STATUS empty, not "Unreachable"
    store = api.daemon.manager.store  # type: ignore[union-attr]
    node_id = "w" * 25

    def add(tx: Tx) -> None:
        tx.nodes.create(
            Node(
                id=node_id,
                spec=NodeSpec(role="worker"),
                manager_status=ManagerStatus(reachability="reachable", addr="198.18.0.12:2377"),
            )
        )

    await store.update(add)
    assert (await api.get(f"/nodes/{node_id}")).get("ManagerStatus") is None
    statuses = {n["ID"]: n.get("ManagerStatus") for n in await api.get("/nodes")}
    assert statuses.pop(node_id) is None
    assert [s["Leader"] for s in statuses.values()] == [True]  # the manager's is still there


async def test_a_bad_enum_value_gets_dockerds_words(api: Api) -> None:
    # `docker service create --restart-condition sometimes` / `docker node update
    # --availability sleep`: the CLI sends the value as is and prints dockerd's answer
    body = spec("web", RestartPolicy={"Condition": "sometimes"})
    bad = await api.call("POST", "/services/create", body, expect=400)
    assert bad == {"message": 'invalid RestartCondition: "sometimes"'}
    node = (await api.get("/nodes"))[0]
    update = {**node["Spec"], "Availability": "sleep"}
    bad = await api.call(
        "POST", f"/nodes/{node['ID']}/update", update, expect=400,
        version=str(node["Version"]["Index"]),
    )  # fmt: skip
    assert bad == {"message": 'invalid Availability: "sleep"'}
    assert await api.get("/services") == []
    assert (await api.get(f"/nodes/{node['ID']}"))["Spec"]["Availability"] == "active"


async def test_scaling_down_removes_the_slots_tasks_as_swarmkit_does(api: Api) -> None:
    # `docker service scale web=3` then `web=1`: `docker service ps web` lists web.1 only
    body = spec("web")
    body["Mode"] = {"Replicated": {"Replicas": 3}}
    sid = (await api.call("POST", "/services/create", body, expect=201))["ID"]

    async def slots() -> list[tuple[int, str]]:
        tasks = await api.get("/tasks", filters={"service": [sid]})
        return sorted((t["Slot"], t["Status"]["State"]) for t in tasks)

    three = [(1, "running"), (2, "running"), (3, "running")]
    await eventually(lambda: _equal(slots(), three), what="three running tasks")
    svc = await api.get(f"/services/{sid}")
    svc["Spec"]["Mode"]["Replicated"]["Replicas"] = 1
    await api.call("POST", f"/services/{sid}/update", svc["Spec"],
                   version=str(svc["Version"]["Index"]))  # fmt: skip
    # the tasks of slots 2 and 3 are stopped and then deleted, not kept as `shutdown`
    await eventually(lambda: _equal(slots(), [(1, "running")]), what="only slot 1 left")
    assert len(api.runtime.alive()) == 1

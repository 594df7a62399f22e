"""Issue 14 on one node: a new version that never turns healthy never gets traffic, and the
update pauses or rolls back by its failure action; start-first keeps the old tasks in the
mesh meanwhile."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.node.test_single_node_api import (  # noqa: F401 (node is a fixture)
    Node,
    eventually,
    node,
    running,
    web_spec,
)


async def _status(node: Node, sid: str, state: str) -> dict[str, Any] | None:  # noqa: F811
    svc = await node.call("GET", f"/services/{sid}")
    status = svc.get("UpdateStatus") or {}
    return svc if status.get("State") == state else None


@pytest.mark.parametrize("action", ["pause", "rollback"])
async def test_unhealthy_version_never_gets_traffic_and_the_update_stops(
    node: Node,  # noqa: F811
    action: str,
) -> None:
    spec = web_spec(2)
    spec["TaskTemplate"]["ContainerSpec"]["HealthCheck"] = {
        "Test": ["CMD-SHELL", "true"],
        "Interval": 20_000_000,
        "Retries": 2,
    }
    spec["UpdateConfig"] = {
        "Parallelism": 2,
        "Order": "start-first",
        "FailureAction": action,
        "Monitor": 200_000_000,
    }
    sid = (await node.call("POST", "/services/create", spec, expect=201))["ID"]
    old = {t["ID"] for t in await running(node, sid, 2)}
    for task_id in old:
        node.health[task_id] = True
    node.health["default"] = False  # the new version never turns healthy
    svc = await node.call("GET", f"/services/{sid}")
    svc["Spec"]["TaskTemplate"]["ContainerSpec"]["Env"] = ["VERSION=2"]
    await node.call(
        "POST", f"/services/{sid}/update", svc["Spec"], version=str(svc["Version"]["Index"])
    )
    want = "paused" if action == "pause" else "rollback_completed"
    if action == "rollback":

        async def rolling_back() -> dict[str, Any] | None:
            return await _status(node, sid, "rollback_started")

        started = (await eventually(rolling_back, timeout=10.0))["UpdateStatus"]["Message"]
        assert started.startswith("update rolled back due to failure or early termination of task ")
        for task in await node.tasks(sid):  # the bad ones stay bad, the rolled-back are fine
            node.health.setdefault(task["ID"], False)
        node.health["default"] = True

    async def reached_state() -> dict[str, Any] | None:
        return await _status(node, sid, want)

    done = await eventually(reached_state, timeout=10.0)
    message = done["UpdateStatus"]["Message"]
    if action == "pause":
        assert message.startswith("update paused due to failure or early termination of task ")
        assert done["Spec"]["TaskTemplate"]["ContainerSpec"]["Env"] == ["VERSION=2"]
        assert {t["ID"] for t in await running(node, sid, 2)} == old  # start-first kept them
    else:
        assert message == "rollback completed"
        assert "Env" not in done["Spec"]["TaskTemplate"]["ContainerSpec"]
        assert "PreviousSpec" not in done or done["PreviousSpec"] is None
    bad = {
        t["ID"]
        for t in await node.tasks(sid)
        if t["Spec"]["ContainerSpec"].get("Env") == ["VERSION=2"]
    }
    assert bad
    reached = {e.task_id for st in node.plane.states for e in st.endpoints if e.ready}
    assert not bad & reached  # no state of the mesh ever routed to the bad version
    assert old <= reached

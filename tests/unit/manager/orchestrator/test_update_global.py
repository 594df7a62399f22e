"""Rolling updates of a global service: one unit per node, both orders."""

from __future__ import annotations

from pathlib import Path

from shoal.api.types import UpdateConfig
from tests.unit.manager.orchestrator.rollout import Cluster, spec


def serving_nodes(c: Cluster) -> set[str]:
    return {
        t.node_id for t in c.tasks() if t.status.state == "running" and t.desired_state == "running"
    }


async def roll(c: Cluster, rounds: int = 60, fail: set[int] | None = None) -> list[int]:
    serving = []
    for _ in range(rounds):
        wake = await c.step()
        serving.append(len(serving_nodes(c)))
        await c.agent(fail)
        serving.append(len(serving_nodes(c)))
        c.now += max(wake, default=1.0)
    return serving


async def test_global_start_first_every_node_keeps_a_serving_task(tmp_path: Path) -> None:
    cfg = UpdateConfig(parallelism=0, order="start-first", failure_action="pause")
    c = Cluster(tmp_path)
    await c.start(spec(replicas=None, update=cfg))
    assert len(serving_nodes(c)) == 3
    await c.update(spec(env="v2", replicas=None, update=cfg))
    serving = await roll(c)
    assert min(serving) == 3
    live = [t for t in c.tasks() if t.status.state == "running"]
    assert sorted((t.node_id, t.spec_version) for t in live) == [("n0", 2), ("n1", 2), ("n2", 2)]
    assert c.service().update_status.state == "completed"  # type: ignore[union-attr]


async def test_global_stop_first_replaces_one_node_at_a_time(tmp_path: Path) -> None:
    cfg = UpdateConfig(parallelism=1, order="stop-first", failure_action="pause")
    c = Cluster(tmp_path)
    await c.start(spec(replicas=None, update=cfg))
    await c.update(spec(env="v2", replicas=None, update=cfg))
    await c.step()
    stopping = [t for t in c.tasks() if t.desired_state == "shutdown"]
    assert len(stopping) == 1
    # the node's new task waits until the old one has stopped
    assert not [t for t in c.tasks() if t.spec_version == 2]
    serving = await roll(c)
    assert min(serving) >= 2
    assert sorted(t.spec_version for t in c.tasks() if t.status.state == "running") == [2, 2, 2]


async def test_global_failing_version_pauses_start_first_old_keeps_serving(
    tmp_path: Path,
) -> None:
    cfg = UpdateConfig(parallelism=0, order="start-first", failure_action="pause")
    c = Cluster(tmp_path)
    await c.start(spec(replicas=None, update=cfg))
    await c.update(spec(env="v2", replicas=None, update=cfg))
    serving = await roll(c, fail={2})
    assert min(serving) == 3
    assert c.service().update_status.state == "paused"  # type: ignore[union-attr]

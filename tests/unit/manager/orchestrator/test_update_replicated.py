"""Rolling updates and rollbacks of a replicated service, driven pass by pass."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from shoal.api.types import (
    Endpoint,
    EndpointPortConfig,
    EndpointSpec,
    Service,
    UpdateConfig,
)
from shoal.manager.state.store import Tx
from tests.unit.manager.orchestrator.rollout import Cluster, spec


def serving_slots(c: Cluster) -> set[int]:
    return {
        t.slot for t in c.tasks() if t.status.state == "running" and t.desired_state == "running"
    }


async def roll(c: Cluster, rounds: int = 60, fail: set[int] | None = None) -> list[int]:
    """Converge, recording how many slots serve after every step of the orchestrator."""
    serving = []
    for _ in range(rounds):
        wake = await c.step()
        serving.append(len(serving_slots(c)))
        await c.agent(fail)
        serving.append(len(serving_slots(c)))
        c.now += max(wake, default=1.0)
    return serving


async def test_start_first_every_slot_serves_until_its_replacement_runs(
    tmp_path: Path,
) -> None:
    cfg = UpdateConfig(parallelism=3, order="start-first", failure_action="pause")
    c = Cluster(tmp_path)
    await c.start(spec(update=cfg))
    await c.update(spec(env="v2", update=cfg))
    await c.step()
    # all three new tasks exist beside the old ones, which still run
    assert Counter(t.spec_version for t in c.tasks() if t.desired_state == "running") == {
        1: 3,
        2: 3,
    }
    await c.agent(start_only=True)  # the new ones start but are not ready yet
    await c.step()
    assert sum(1 for t in c.tasks() if t.spec_version == 1 and t.desired_state == "running") == 3
    serving = await roll(c)
    assert min(serving) == 3
    live = [t for t in c.tasks() if t.status.state == "running"]
    assert sorted(t.spec_version for t in live) == [2, 2, 2]
    assert c.service().update_status is not None
    assert c.service().update_status.state == "completed"


async def test_start_first_one_at_a_time(tmp_path: Path) -> None:
    cfg = UpdateConfig(parallelism=1, order="start-first", failure_action="pause")
    c = Cluster(tmp_path)
    await c.start(spec(update=cfg))
    await c.update(spec(env="v2", update=cfg))
    await c.step()
    fresh = [t for t in c.tasks() if t.spec_version == 2]
    assert len(fresh) == 1
    serving = await roll(c)
    assert min(serving) == 3
    assert sorted(t.spec_version for t in c.tasks() if t.status.state == "running") == [2, 2, 2]


async def test_stop_first_stops_before_it_starts_and_keeps_parallelism(tmp_path: Path) -> None:
    cfg = UpdateConfig(parallelism=1, order="stop-first", failure_action="pause")
    c = Cluster(tmp_path)
    await c.start(spec(update=cfg))
    await c.update(spec(env="v2", update=cfg))
    await c.step()
    assert [t.spec_version for t in c.tasks() if t.desired_state == "shutdown"] == [1]
    assert not [t for t in c.tasks() if t.spec_version == 2]  # waits for the old one to stop
    serving = await roll(c)
    assert min(serving) >= 2
    assert c.service().update_status.state == "completed"  # type: ignore[union-attr]


async def test_failing_new_version_pauses_start_first_old_keeps_serving(
    tmp_path: Path,
) -> None:
    cfg = UpdateConfig(parallelism=1, order="start-first", failure_action="pause")
    c = Cluster(tmp_path)
    await c.start(spec(update=cfg))
    await c.update(spec(env="v2", update=cfg))
    serving = await roll(c, fail={2})
    status = c.service().update_status
    assert status is not None and status.state == "paused"
    failed = [t for t in c.tasks() if t.spec_version == 2 and t.status.state == "failed"]
    assert len(failed) == 1
    assert status.message == (
        f"update paused due to failure or early termination of task {failed[0].id}"
    )
    assert min(serving) == 3  # the old version kept serving every slot
    assert sorted(t.spec_version for t in c.tasks() if t.status.state == "running") == [1, 1, 1]


async def test_failure_action_rollback_returns_to_the_previous_spec(tmp_path: Path) -> None:
    cfg = UpdateConfig(parallelism=1, order="stop-first", failure_action="rollback")
    c = Cluster(tmp_path)
    await c.start(spec(update=cfg))
    await c.update(spec(env="v2", update=cfg))
    await roll(c, fail={2})
    svc = c.service()
    assert svc.spec.labels == {"v": "v1"}
    assert svc.previous_spec is None  # swarmkit clears it on an automatic rollback
    assert svc.update_status is not None and svc.update_status.state == "rollback_completed"
    assert svc.update_status.message == "rollback completed"
    live = [t for t in c.tasks() if t.status.state == "running"]
    assert len(live) == 3 and {t.spec_version for t in live} == {svc.spec_version}


async def test_rollback_keeps_the_tasks_that_still_run_the_previous_spec(
    tmp_path: Path,
) -> None:
    """start-first x1, the new version fails at once: the rollback replaces only what the
    update replaced (nothing here); the three original tasks keep serving, unrestarted."""
    cfg = UpdateConfig(parallelism=1, order="start-first", failure_action="rollback")
    c = Cluster(tmp_path)
    await c.start(spec(update=cfg))
    await c.converge()
    before = {t.id for t in c.live()}
    await c.update(spec(env="v2", update=cfg))
    serving = await roll(c, fail={2})
    svc = c.service()
    assert svc.update_status is not None and svc.update_status.state == "rollback_completed"
    assert {t.id for t in c.tasks() if t.status.state == "running"} == before
    assert min(serving) == 3


async def test_max_failure_ratio_and_continue_tolerate_failures(tmp_path: Path) -> None:
    c = Cluster(tmp_path)
    cfg = UpdateConfig(parallelism=1, failure_action="pause", max_failure_ratio=0.5)
    await c.start(spec(update=cfg))
    await c.update(spec(env="v2", update=cfg))
    await c.step()
    await c.agent(fail={2})  # starting
    await c.agent(fail={2})  # one failure out of three slots: under the ratio
    await c.step()
    assert c.service().update_status.state == "updating"  # type: ignore[union-attr]
    cont = UpdateConfig(parallelism=1, failure_action="continue")
    (tmp_path / "2").mkdir()
    c2 = Cluster(tmp_path / "2")
    await c2.start(spec(update=cont))
    await c2.update(spec(env="v2", update=cont))
    await roll(c2, rounds=10, fail={2})
    assert c2.service().update_status.state == "updating"  # type: ignore[union-attr]


async def test_a_failing_rollback_pauses_as_rollback_paused(tmp_path: Path) -> None:
    cfg = UpdateConfig(parallelism=1, failure_action="rollback")
    back = UpdateConfig(parallelism=1, failure_action="pause")
    c = Cluster(tmp_path)
    await c.start(spec(update=cfg, rollback=back))
    await c.converge()
    await c.update(spec(env="v2", update=cfg, rollback=back))
    # the new version fails, and so do the rolled-back version's replacement tasks
    await roll(c, fail={1, 2})
    status = c.service().update_status
    assert status is not None and status.state == "rollback_paused"
    assert status.message.startswith("rollback paused due to failure or early termination of task ")


async def test_paused_update_starts_no_new_batch(tmp_path: Path) -> None:
    cfg = UpdateConfig(parallelism=1, failure_action="pause")
    c = Cluster(tmp_path)
    await c.start(spec(update=cfg))
    await c.update(spec(env="v2", update=cfg))
    await roll(c, fail={2})
    assert c.service().update_status.state == "paused"  # type: ignore[union-attr]
    old = {t.id for t in c.tasks() if t.spec_version == 1 and t.desired_state == "running"}
    assert len(old) == 2  # the first slot was replaced (and its new task fails), no other
    await roll(c, rounds=5, fail={2})
    assert {t.id for t in c.tasks() if t.spec_version == 1 and t.desired_state == "running"} == old


async def test_an_automatic_rollback_restores_the_previous_published_ports(
    tmp_path: Path,
) -> None:
    """swarmkit re-allocates the rolled-back spec's endpoint: ports the bad update changed
    come back (a dynamic one keeps its current number)."""
    cfg = UpdateConfig(parallelism=1, order="stop-first", failure_action="rollback")
    good = spec(update=cfg)
    good.endpoint_spec = EndpointSpec(ports=[
        EndpointPortConfig(target_port=80, published_port=8080),
        EndpointPortConfig(target_port=53, published_port=0, protocol="udp"),
    ])
    bad = spec(env="v2", update=cfg)
    bad.endpoint_spec = EndpointSpec(ports=[
        EndpointPortConfig(target_port=80, published_port=9090),
        EndpointPortConfig(target_port=53, published_port=0, protocol="udp"),
    ])
    c = Cluster(tmp_path)
    await c.start(good)
    await c.update(bad)

    def publish_bad(tx: Tx) -> None:
        svc: Service = tx.get("service", "s")
        svc.endpoint = Endpoint(spec=bad.endpoint_spec or EndpointSpec(), ports=[
            EndpointPortConfig(target_port=80, published_port=9090, protocol="tcp",
                               publish_mode="ingress"),
            EndpointPortConfig(target_port=53, published_port=30007, protocol="udp",
                               publish_mode="ingress"),
        ])
        tx.update("service", svc)

    await c.store.update(publish_bad)
    await roll(c, fail={2})
    svc = c.service()
    assert svc.update_status is not None and svc.update_status.state == "rollback_completed"
    assert [(p.target_port, p.published_port, p.protocol) for p in svc.endpoint.ports or []] == [
        (80, 8080, "tcp"), (53, 30007, "udp")]
    assert svc.endpoint.spec == good.endpoint_spec

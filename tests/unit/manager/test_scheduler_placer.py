"""The heap placer places exactly like the plain scheduler (pick_node per task, the
reference kept in scheduler.py), on seeded random clusters with every filter in play."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from shoal.api.states import TaskState, is_terminal, rank
from shoal.manager.orchestrator.tasks import is_current
from shoal.manager.scheduler.filters import Reserved, explain_no_fit, reservation_of
from shoal.manager.scheduler.scheduler import Scheduler, pick_node

from .schedsim import FakeTx, make_nodes, make_tasks, outcome


def reference_pass(tx: FakeTx) -> None:
    """The replicated part of the pass as it was (a62bf31): pick_node for every task."""
    nodes = sorted(tx.list("node"), key=lambda n: n.id)
    tasks = tx.list("task")
    per_service: Counter[tuple[str, str]] = Counter()
    total: Counter[str] = Counter()
    reserved: dict[str, Reserved] = {}
    for t in tasks:
        if t.node_id and is_current(t):
            per_service[(t.node_id, t.service_id)] += 1
            total[t.node_id] += 1
        if t.node_id and not is_terminal(t.status.state):
            reserved[t.node_id] = reserved.get(t.node_id, Reserved()) + reservation_of(t.spec)
    pending = [t for t in tasks
               if not t.node_id and rank(t.status.state) <= TaskState.PENDING and is_current(t)]
    for task in sorted(pending, key=lambda t: (t.service_id, t.slot)):
        node = pick_node(task, nodes, per_service, total, reserved)
        if node is None:
            on_node = {n.id: per_service[(n.id, task.service_id)] for n in nodes}
            task.status.state = "pending"
            task.status.err = explain_no_fit(nodes, task.spec, on_node, reserved)
            continue
        per_service[(node.id, task.service_id)] += 1
        total[node.id] += 1
        reserved[node.id] = reserved.get(node.id, Reserved()) + reservation_of(task.spec)
        task.node_id = node.id
        task.status.state = "assigned"
        task.status.err = ""


def cluster(seed: int) -> FakeTx:
    rng = random.Random(seed)
    nodes = make_nodes(rng, 0 if seed % 20 == 19 else rng.randint(1, 40))
    tasks = make_tasks(rng, nodes, rng.randint(1, 4), rng.randint(1, 60),
                       rng.randint(0, 30) if nodes else 0, filters=seed % 4 != 0)
    return FakeTx(nodes, tasks)


SEEDS = range(60)


@pytest.mark.parametrize("seed", SEEDS)
def test_the_placer_places_like_pick_node(seed: int) -> None:
    new, old = cluster(seed), cluster(seed)
    Scheduler._pass(None, new)  # type: ignore[arg-type]  # the pass uses no state of its own
    reference_pass(old)
    assert outcome(new.tables["task"]) == outcome(old.tables["task"])


def test_the_random_clusters_both_place_and_refuse() -> None:
    states: Counter[str] = Counter()
    for seed in SEEDS:
        tx = cluster(seed)
        Scheduler._pass(None, tx)  # type: ignore[arg-type]
        states.update("assigned" if t.status.state == "assigned" else
                      "no fit" if t.status.err.startswith("no suitable node") else "other"
                      for t in tx.tables["task"] if not t.id.startswith("p"))
    assert states["assigned"] > 1000 and states["no fit"] > 100 and states["other"] == 0

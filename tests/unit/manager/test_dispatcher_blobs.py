"""What a node is given besides its tasks, and which commits make its sessions look again.

`node_blobs` reads only the secrets and configs the node's live tasks use; the node's
sessions (in-process `LocalSession`, the dispatcher's remote one) skip commits that cannot
change what they send: other nodes' tasks, secrets nobody on the node uses yet.
"""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import Any

from shoal import timeouts
from shoal.api.types import ContainerSpec, Secret, SecretSpec, Task, TaskSpec, TaskStatusInfo
from shoal.manager.dispatcher.blobs import blob_refs, node_blobs, touches
from shoal.manager.dispatcher.dispatcher import _may_change
from shoal.manager.dispatcher.session import LocalSession
from shoal.manager.state.store import Commit, Event, Store, Tx
from tests.unit.manager.stores import local_store


def secret(sid: str, data: bytes = b"s3cr3t") -> Secret:
    return Secret(id=sid, spec=SecretSpec(name=f"name-{sid}",
                                          data=base64.b64encode(data).decode()))


def task(tid: str, node: str, secrets: list[str], state: str = "running") -> Task:
    refs: Any = [{"SecretID": s, "SecretName": f"name-{s}"} for s in secrets]
    spec = TaskSpec(container_spec=ContainerSpec(image="busybox", secrets=refs))
    return Task(id=tid, service_id="svc", node_id=node, spec=spec, desired_state="running",
                status=TaskStatusInfo(state=state))


async def write(store: Store, *objs: Secret | Task) -> None:
    def fn(tx: Tx) -> None:
        for obj in objs:
            kind = "secret" if isinstance(obj, Secret) else "task"
            current = tx.get(kind, obj.id)
            if current is None:
                tx.create(kind, obj)
            else:
                obj.version = current.version
                tx.update(kind, obj)

    await store.update(fn)


async def test_node_blobs_hold_the_secrets_of_the_nodes_live_tasks_only(tmp_path: Path) -> None:
    store = local_store(tmp_path)
    await write(store, secret("s1", b"one"), secret("s2"), secret("s3", b"three"),
                task("t1", "n1", ["s3", "s1", "gone"]), task("t2", "n2", ["s2"]),
                task("t3", "n1", ["s2"], state="complete"))
    view = store.view()
    secrets, configs, auth = node_blobs(view, "n1")
    assert [(b.id, b.data) for b in secrets] == [("s1", b"one"), ("s3", b"three")]
    assert configs == [] and auth == {}
    assert blob_refs(view, "n1") == ({"s1", "s3", "gone"}, set(), {"svc"})
    assert node_blobs(view, "n1", blob_refs(view, "n1")) == node_blobs(view, "n1")


def test_which_events_touch_a_node() -> None:
    refs = ({"s1"}, {"c1"}, {"svc"})
    mine, other = task("t1", "n1", []), task("t2", "n2", [])
    moved_away = Event("task", "update", other, mine)
    assert touches([Event("task", "create", mine, None)], "n1", refs)
    assert touches([moved_away], "n1", refs)
    assert not touches([Event("task", "create", other, None)], "n1", refs)
    assert touches([Event("secret", "update", secret("s1"), secret("s1"))], "n1", refs)
    assert not touches([Event("secret", "create", secret("s9"), None)], "n1", refs)
    # the remote session's message also carries every task, node and service: only
    # writes of secrets and configs the node does not use are skipped there
    assert not _may_change([Event("secret", "create", secret("s9"), None), Commit(3)], refs)
    assert _may_change([Event("secret", "delete", secret("s1"), secret("s1")), Commit(3)],
                       refs)
    assert _may_change([Event("task", "create", other, None), Commit(3)], refs)
    assert _may_change([Commit(4)], refs)  # a reloaded state


async def test_local_session_looks_again_only_when_a_commit_concerns_its_node(
    tmp_path: Path,
) -> None:
    store = local_store(tmp_path)
    await write(store, secret("s1", b"one"), task("t1", "n1", ["s1"]))
    given: list[list[str]] = []
    session = LocalSession(store, "n1", on_blobs=lambda b: given.append([s.id for s in b[0]]))
    seen: list[list[str]] = []

    async def follow() -> None:
        async for tasks in session.assignments():
            seen.append(sorted(t.id for t in tasks))

    runner = asyncio.create_task(follow())
    try:
        async def until(pred: Any) -> None:
            async def wait() -> None:
                while not pred():
                    await asyncio.sleep(0.005)
            await timeouts.wait_for(wait(), 5)

        await until(lambda: given == [["s1"]] and seen == [["t1"]])
        # an unused secret and another node's task: no new look
        await write(store, secret("s2"))
        await write(store, task("t9", "n2", ["s2"]))
        # a task of this node using the new secret: blobs and tasks again, with it
        await write(store, secret("s3"), task("t2", "n1", ["s2"]))
        await until(lambda: len(given) >= 2)
        assert given == [["s1"], ["s1", "s2"]]
        assert seen == [["t1"], ["t1", "t2"]]
        # a secret the node uses changes: its blobs are given again
        await write(store, secret("s1", b"rotated"))
        await until(lambda: len(given) >= 3)
        assert given[2] == ["s1", "s2"] and seen == [["t1"], ["t1", "t2"]]
    finally:
        runner.cancel()

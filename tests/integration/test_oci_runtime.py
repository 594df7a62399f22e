"""The oci runtime for real (issue 11): a lab daemon runs a busybox image as a runc
container and everything a container is made of is gone after `service rm`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from shoal.lab import Lab
from shoal.lab import images as test_images
from shoal.lab.iproute import list_netns
from tests.integration.labtools import running, shoal, until

pytestmark = pytest.mark.lab

SCRIPT = (
    "echo pid=$$; id; pwd; echo FOO=$FOO; ls /; "
    "cat /sys/fs/cgroup/memory/memory.limit_in_bytes; httpd -p 80 -h /tmp; echo bound80=$?; "
    "echo somaxconn=$(cat /proc/sys/net/core/somaxconn); exec sleep 1000"
)


def _logs(lab: Lab, service: str) -> str:
    return shoal(lab, "service", "logs", "--raw", service, check=False).stdout


def _daemon_mounts(lab: Lab) -> str:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmd = Path(f"/proc/{entry}/cmdline").read_bytes()
                if b"daemon" in cmd and str(lab.layout.data_root("h1")).encode() in cmd:
                    out.append(Path(f"/proc/{entry}/mountinfo").read_text())
            except OSError:
                continue
    return "\n".join(out)


def test_busybox_container_runs_isolated_and_leaves_nothing(lab1: Lab, tmp_path: Path) -> None:
    archive = test_images.export("busybox", tmp_path / "bb.tar", "docker-archive", "bb:oci")
    proc = lab1.exec("h1", ["docker", "image", "load", "-i", str(archive)], capture=True)
    assert "Loaded image: bb:oci" in proc.stdout, proc.stderr
    shoal(lab1, "service", "create", "-d", "--name", "c", "--limit-memory", "64m",
          "--env", "FOO=bar", "--user", "app", "--workdir", "/tmp",
          "--sysctl", "net.core.somaxconn=1000", "bb:oci", "sh", "-c", SCRIPT)  # fmt: skip
    try:
        tasks = until(lambda: running(lab1, "c"), 60, "container running")
    except AssertionError:
        every = lab1.client("h1").get("/tasks")
        log = lab1.layout.daemon_log("h1").read_text()[-3000:]
        raise AssertionError(f"{[t['Status'] for t in every]}\n{log}") from None
    task_id = tasks[0]["ID"]
    logs = until(lambda: (out := _logs(lab1, "c")) and "limit" not in out and "somaxconn" in out
                 and out, 30, "container output")  # fmt: skip
    assert "pid=1" in logs
    assert "uid=1000(app) gid=1000(app)" in logs
    assert "\n/tmp\n" in f"\n{logs}"
    assert "FOO=bar" in logs
    listing = logs.split()
    assert "bin" in listing and "etc" in listing and "work" not in listing
    assert "67108864" in logs
    # as under dockerd: a net.* sysctl of the service is set in the task's netns (runc,
    # which runs in that netns, refused it), and a user may bind a port under 1024
    assert "somaxconn=1000" in logs and "bound80=0" in logs, logs
    root = lab1.layout.data_root("h1")
    bundle = root / "oci" / "bundles" / task_id
    assert (bundle / "config.json").exists()
    assert task_id in _daemon_mounts(lab1)
    cgroup = Path("/sys/fs/cgroup/memory/shoal") / task_id
    assert (cgroup / "memory.limit_in_bytes").read_text().strip() == "67108864"
    # the Docker API sees the container: ps, exec inside it (pid 1 is the container's)
    ps = lab1.exec("h1", ["docker", "ps", "--no-trunc", "--format", "{{.ID}} {{.Names}}"],
                   capture=True).stdout  # fmt: skip
    assert task_id in ps and f"c.1.{task_id}" in ps, ps
    inside = lab1.exec("h1", ["docker", "exec", task_id[:12], "cat", "/proc/1/cmdline"],
                       capture=True)  # fmt: skip
    assert inside.stdout.replace("\0", " ").startswith("sleep 1000"), inside
    # `image rm` of an image in use is refused
    refused = lab1.exec("h1", ["docker", "image", "rm", "bb:oci"], capture=True)
    assert refused.returncode != 0 and "conflict" in refused.stderr, refused.stderr

    # kill -9 of the container's process: the task fails and is replaced
    state = json.loads((root / "oci" / "runc" / task_id / "state.json").read_text())
    os.kill(int(state["init_process_pid"]), signal.SIGKILL)
    until(lambda: [t for t in running(lab1, "c") if t["ID"] != task_id], 60, "replacement")
    # the dead task's container is gone but for its record: `docker ps -a` shows it exited
    until(lambda: not (bundle / "rootfs").exists(), 30, "old container removed")
    assert [p.name for p in bundle.iterdir()] == ["oci.json"]
    exited = lab1.exec("h1", ["docker", "ps", "-aq", "--no-trunc", "--filter", "status=exited"],
                       capture=True).stdout.split()  # fmt: skip
    assert task_id in exited

    shoal(lab1, "service", "rm", "c")
    until(lambda: not (root / "oci" / "bundles").exists()
          or not list((root / "oci" / "bundles").iterdir()), 30, "bundles removed")  # fmt: skip
    assert not cgroup.exists()
    assert not [n for n in list_netns() if n.endswith(task_id[:12])]
    assert "overlay" not in _daemon_mounts(lab1) or task_id not in _daemon_mounts(lab1)
    assert not list((root / "oci" / "runc").iterdir())


def test_mounts_volume_tmpfs_and_a_missing_bind_source(lab1: Lab, tmp_path: Path) -> None:
    archive = test_images.export("busybox", tmp_path / "bb.tar", "docker-archive", "bb:m")
    lab1.exec("h1", ["docker", "image", "load", "-i", str(archive)], capture=True)
    secret = lab1.exec("h1", ["docker", "secret", "create", "pw", "-"], capture=True, input="s3")
    assert secret.returncode == 0, secret.stderr
    shoal(lab1, "service", "create", "-d", "--name", "m",
          "--secret", "source=pw,target=pw,uid=1000,mode=0400",
          "--mount", "type=volume,source=data,target=/data",
          "--mount", "type=tmpfs,target=/scratch",
          "bb:m", "sh", "-c", "echo hi > /data/f; grep -c ' /scratch tmpfs' /proc/mounts; "
          "cat /data/f; stat -c '%u %a' /run/secrets/pw; cat /run/secrets/pw; echo; "
          "exec sleep 1000")  # fmt: skip
    until(lambda: "hi" in _logs(lab1, "m"), 60, "mount output")
    until(lambda: "s3" in _logs(lab1, "m"), 30, "secret output")
    assert _logs(lab1, "m").split()[:5] == ["1", "hi", "1000", "400", "s3"]
    data = lab1.layout.data_root("h1") / "volumes" / "data" / "_data" / "f"
    assert data.read_text() == "hi\n"
    assert "data" in lab1.exec("h1", ["docker", "volume", "ls", "-q"], capture=True).stdout
    shoal(lab1, "service", "create", "-d", "--name", "b", "--mount",
          "type=bind,source=/nonexistent-x,target=/x", "bb:m", "true")  # fmt: skip

    def rejected() -> list[str]:
        tasks = lab1.client("h1").get("/tasks", params={"filters": {"service": {"b": True}}})
        return [t["Status"].get("Err", "") for t in tasks if t["Status"]["State"] == "rejected"]

    errs = until(rejected, 60, "bind rejected")
    assert errs[0] == ('invalid mount config for type "bind": bind source path does not exist: '
                       "/nonexistent-x")  # fmt: skip
    shoal(lab1, "service", "rm", "m", "b")


REGISTRY = "198.18.0.3:5000"
INSIDE = (
    "tr '\\0' ' ' < /proc/1/cmdline; echo; pwd; id -u; hostname; cat /etc/site.conf; echo; "
    "echo FROM=$FROM_SERVICE; cat /sys/fs/cgroup/memory/memory.limit_in_bytes; "
    "test -e {venv} && echo HOST-VENV || echo NO-HOST-VENV"
)


def _docker(lab: Lab, *args: str) -> subprocess.CompletedProcess[str]:
    return lab.exec("h1", ["docker", *args], capture=True, timeout=60)


def _init_pid(lab: Lab, task_id: str) -> int:
    runc_state = lab.layout.data_root("h1") / "oci" / "runc" / task_id / "state.json"
    return int(json.loads(runc_state.read_text())["init_process_pid"])


def _leftovers(lab: Lab, task_id: str, record: bool = False) -> list[str]:
    """What is left of a task's container (its exited record too unless `record`)."""
    root = lab.layout.data_root("h1")
    bundle = root / "oci" / "bundles" / task_id
    found = [str(p) for p in (bundle / "rootfs", bundle / "upper", root / "oci" / "runc" / task_id)
             if p.exists()]  # fmt: skip
    if not record and bundle.exists():
        found.append(str(bundle))
    found += [str(c) for c in Path("/sys/fs/cgroup").glob(f"*/shoal/{task_id}")]
    found += [n for n in list_netns() if n.endswith(task_id[:12])]
    found += [line for line in _daemon_mounts(lab).splitlines() if task_id in line]
    return found


def test_registry_image_init_hostname_config_exec_user_restart_and_kill(lab1: Lab) -> None:
    """The acceptance story of one container task of an image pulled from the lab registry."""
    test_images.push("whoami", f"{REGISTRY}/whoami:acc", netns=lab1.layout.netns("client"))
    made = lab1.exec("h1", ["docker", "config", "create", "site", "-"], capture=True,
                     input="site-config")  # fmt: skip
    assert made.returncode == 0, made.stderr
    bad = shoal(lab1, "service", "create", "-d", "--name", "bad", "--hostname", "{{.Task.Nope}}",
                f"{REGISTRY}/whoami:acc", check=False)  # fmt: skip
    assert bad.returncode != 0 and "can't evaluate field Nope" in bad.stderr, bad.stderr
    assert "bad" not in shoal(lab1, "service", "ls", "-q", "--format", "{{.Name}}").stdout
    shoal(lab1, "service", "create", "-d", "--name", "w", "--limit-memory", "32M", "--init",
          "--hostname", "{{.Service.Name}}-{{.Task.Slot}}", "--env", "FROM_SERVICE=yes",
          "--config", "source=site,target=/etc/site.conf", f"{REGISTRY}/whoami:acc")  # fmt: skip
    task_id = until(lambda: running(lab1, "w"), 60, "w running")[0]["ID"]
    inside = _docker(lab1, "exec", task_id[:12], "sh", "-c", INSIDE.format(venv=sys.prefix))
    assert inside.returncode == 0, inside.stderr
    lines = inside.stdout.splitlines()
    assert lines[0].startswith("/sbin/docker-init -- httpd -f -p 80"), lines  # --init, image Cmd
    assert lines[1:] == ["/www", "0", "w-1", "site-config", "FROM=yes", "33554432",
                         "NO-HOST-VENV"], lines  # fmt: skip
    cgroup = Path("/sys/fs/cgroup/memory/shoal") / task_id / "memory.limit_in_bytes"
    assert cgroup.read_text().strip() == "33554432"
    assert _docker(lab1, "exec", "-u", "app", task_id[:12], "id", "-u").stdout.strip() == "1000"
    nobody = _docker(lab1, "exec", "-u", "bob", task_id[:12], "id")
    assert nobody.returncode == 126, nobody
    assert "unable to find user bob: no matching entries in passwd file" in nobody.stderr

    # a daemon restart adopts the running container: same process, same StartedAt
    pid = _init_pid(lab1, task_id)
    started = json.loads(_docker(lab1, "inspect", task_id).stdout)[0]["State"]["StartedAt"]
    lab1.kill_daemon("h1", signal.SIGTERM)
    lab1.start("h1")
    adopted = f"task {task_id}: adopted running process"
    until(lambda: adopted in lab1.layout.daemon_log("h1").read_text(), 60, "w adopted")
    assert [t["ID"] for t in running(lab1, "w")] == [task_id]
    assert _init_pid(lab1, task_id) == pid and os.path.exists(f"/proc/{pid}")
    again = json.loads(_docker(lab1, "inspect", task_id).stdout)[0]["State"]
    assert again["StartedAt"] == started and again["Pid"] == pid
    assert _docker(lab1, "exec", task_id[:12], "hostname").stdout.strip() == "w-1"

    # kill -9 of the container's process: replaced; exec into the dead task fails cleanly
    os.kill(pid, signal.SIGKILL)
    until(lambda: [t for t in running(lab1, "w") if t["ID"] != task_id], 60, "replacement")
    dead = _docker(lab1, "exec", task_id[:12], "true")
    assert dead.returncode != 0 and "Traceback" not in dead.stderr
    assert f"No such container: {task_id[:12]}" in dead.stderr or "is not running" in dead.stderr
    until(lambda: not _leftovers(lab1, task_id, record=True), 30, "the killed container gone")
    new_id = running(lab1, "w")[0]["ID"]
    shoal(lab1, "service", "rm", "w")
    until(lambda: not _leftovers(lab1, new_id) and not _leftovers(lab1, task_id), 30,
          "nothing of w left")  # fmt: skip
    assert not list((lab1.layout.data_root("h1") / "oci" / "bundles").iterdir())


def test_a_health_checked_container_shows_its_health_in_ps_and_inspect(lab1: Lab) -> None:
    # `docker ps` on the node: `Up 3 seconds (healthy)`; `docker inspect`: State.Health
    test_images.push("whoami", f"{REGISTRY}/whoami:acc", netns=lab1.layout.netns("client"))
    shoal(lab1, "service", "create", "-d", "--name", "hc", "--health-cmd", "true",
          "--health-interval", "1s", f"{REGISTRY}/whoami:acc")  # fmt: skip
    task_id = until(lambda: running(lab1, "hc"), 60, "hc running and healthy")[0]["ID"]
    ps = _docker(lab1, "ps", "--filter", f"id={task_id}", "--format", "{{.Status}}").stdout
    assert ps.strip().startswith("Up ") and ps.strip().endswith("(healthy)"), ps
    state = json.loads(_docker(lab1, "inspect", task_id).stdout)[0]["State"]
    assert state["Health"]["Status"] == "healthy", state
    shoal(lab1, "service", "rm", "hc")
    until(lambda: not _leftovers(lab1, task_id), 30, "nothing of hc left")


def test_a_task_killed_for_memory_shows_it(lab1: Lab, tmp_path: Path) -> None:
    archive = test_images.export("busybox", tmp_path / "bb.tar", "docker-archive", "bb:oom")
    lab1.exec("h1", ["docker", "image", "load", "-i", str(archive)], capture=True)
    shoal(lab1, "service", "create", "-d", "--name", "hog", "--limit-memory", "8M",
          "--restart-condition", "none", "bb:oom",
          "sh", "-c", "x=0123456789; while :; do x=$x$x; done")  # fmt: skip

    def failed() -> list[dict[str, object]]:
        tasks = lab1.client("h1").get("/tasks", params={"filters": {"service": {"hog": True}}})
        return [t for t in tasks if t["Status"]["State"] == "failed"]

    task = until(failed, 60, "the hog killed")[0]
    assert task["Status"]["Err"] == "task: non-zero exit (137)"  # swarm's words
    assert task["Status"]["ContainerStatus"]["ExitCode"] == 137
    state = until(lambda: (out := _docker(lab1, "inspect", str(task["ID"]))).returncode == 0
                  and json.loads(out.stdout)[0]["State"], 30, "the exited container")  # fmt: skip
    assert state["OOMKilled"] is True and state["ExitCode"] == 137 and state["Status"] == "exited"
    # `docker rm` of the exited container: nothing of it is left, its record included
    assert _docker(lab1, "rm", str(task["ID"])).returncode == 0
    gone = _docker(lab1, "inspect", "--type", "container", str(task["ID"]))
    assert "No such container" in gone.stderr, gone
    assert not _leftovers(lab1, str(task["ID"]))
    shoal(lab1, "service", "rm", "hog")
    until(lambda: not _leftovers(lab1, str(task["ID"])), 30, "nothing of hog left")

"""The oci runtime for real (issue 11): a lab daemon runs a busybox image as a runc
container and everything a container is made of is gone after `service rm`."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from shoal.lab import Lab
from shoal.lab import images as test_images
from shoal.lab.iproute import list_netns
from tests.integration.labtools import running, shoal, until

pytestmark = pytest.mark.lab

SCRIPT = (
    "echo pid=$$; id; pwd; echo FOO=$FOO; ls /; "
    "cat /sys/fs/cgroup/memory/memory.limit_in_bytes; exec sleep 1000"
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
          "bb:oci", "sh", "-c", SCRIPT)  # fmt: skip
    try:
        tasks = until(lambda: running(lab1, "c"), 60, "container running")
    except AssertionError:
        every = lab1.client("h1").get("/tasks")
        log = lab1.layout.daemon_log("h1").read_text()[-3000:]
        raise AssertionError(f"{[t['Status'] for t in every]}\n{log}") from None
    task_id = tasks[0]["ID"]
    logs = until(lambda: (out := _logs(lab1, "c")) and "limit" not in out and "67108864" in out
                 and out, 30, "container output")  # fmt: skip
    assert "pid=1" in logs
    assert "uid=1000(app) gid=1000(app)" in logs
    assert "\n/tmp\n" in f"\n{logs}"
    assert "FOO=bar" in logs
    listing = logs.split()
    assert "bin" in listing and "etc" in listing and "work" not in listing
    assert "67108864" in logs
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
    until(lambda: not bundle.exists(), 30, "old bundle removed")

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

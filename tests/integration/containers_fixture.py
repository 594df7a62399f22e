"""A real runc task container for the container endpoints' tests, behind `TaskContainers`.

`RuncTask` makes a busybox-static bundle (rootfs with /bin/busybox and its applets, a
`runc spec` template edited: hostname, a netns of its own, a cgroup with a memory and pids
limit), runs it detached, and tears everything down (container, cgroup, netns, files).
`RuncContainers` is the protocol's implementation over it, as the runtime's will be.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from shoal.api.timefmt import from_epoch
from shoal.httpapi.taskcontainers import (
    ContainerView,
    ExecOptions,
    NetworkAttachment,
    runc_exec_argv,
)

BUSYBOX = Path("/bin/busybox")
MEMORY_LIMIT = 32 * 1024 * 1024
PIDS_LIMIT = 64


def make_rootfs(rootfs: Path, hostname: str) -> None:
    (rootfs / "bin").mkdir(parents=True)
    (rootfs / "bin" / "busybox").write_bytes(BUSYBOX.read_bytes())
    (rootfs / "bin" / "busybox").chmod(0o755)
    applets = subprocess.run([str(BUSYBOX), "--list"], capture_output=True, text=True, check=True)
    for applet in applets.stdout.split():
        if applet != "busybox":
            (rootfs / "bin" / applet).symlink_to("busybox")
    for name in ("etc", "tmp", "proc", "sys", "dev", "root"):
        (rootfs / name).mkdir(exist_ok=True)
    (rootfs / "etc" / "hostname").write_text(hostname + "\n")
    (rootfs / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")


def make_config(bundle: Path, netns: str, cgroup: str, hostname: str) -> None:
    subprocess.run(["runc", "spec"], cwd=bundle, check=True)
    config = json.loads((bundle / "config.json").read_text())
    config["process"]["terminal"] = False
    config["process"]["args"] = ["sh", "-c", "echo ready; exec sleep 3600"]
    config["process"]["env"].append("TASK_ENV=from-spec")
    config["root"]["readonly"] = False
    config["hostname"] = hostname
    linux = config["linux"]
    linux["namespaces"] = [
        {"type": t} for t in ("pid", "ipc", "uts", "mount")
    ] + [{"type": "network", "path": f"/var/run/netns/{netns}"}]
    linux["cgroupsPath"] = cgroup
    linux["resources"] = {"memory": {"limit": MEMORY_LIMIT}, "pids": {"limit": PIDS_LIMIT}}
    (bundle / "config.json").write_text(json.dumps(config))


@dataclass
class RuncTask:
    """One detached runc container and what it needs; `close()` removes everything."""

    base: Path
    container_id: str
    netns: str

    @property
    def runc_root(self) -> Path:
        return self.base / "runc"

    @property
    def cgroup(self) -> str:
        return f"/shoal-test-{self.container_id[:12]}"

    def runc(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["runc", "--root", str(self.runc_root), *args],
            capture_output=True, text=True, check=check, timeout=30,
        )

    def start(self, hostname: str) -> None:
        bundle = self.base / "bundle"
        make_rootfs(bundle / "rootfs", hostname)
        subprocess.run(["ip", "netns", "add", self.netns], check=True)
        make_config(bundle, self.netns, self.cgroup, hostname)
        with (self.base / "console.out").open("wb") as out:
            subprocess.run(
                ["runc", "--root", str(self.runc_root), "run", "-d", "--bundle", str(bundle),
                 self.container_id],
                stdin=subprocess.DEVNULL, stdout=out, stderr=out, check=True, timeout=30,
            )

    def state(self) -> dict[str, object]:
        proc = self.runc("state", self.container_id, check=False)
        return json.loads(proc.stdout) if proc.returncode == 0 else {}

    def close(self) -> None:
        self.runc("delete", "--force", self.container_id, check=False)
        subprocess.run(["ip", "netns", "del", self.netns], capture_output=True, check=False)


@dataclass
class RuncContainers:
    """`TaskContainers` over real runc containers (and views of finished ones)."""

    tasks: dict[str, tuple[RuncTask, ContainerView]]
    finished: list[ContainerView]

    def containers(self) -> Sequence[ContainerView]:
        out = list(self.finished)
        for task, view in self.tasks.values():
            state = task.state()
            status = state.get("status")
            if status == "running":
                out.append(replace(view, status="running", pid=int(str(state["pid"]))))
            elif status == "stopped":
                out.append(replace(view, status="exited", exit_code=137,
                                   finished_at=from_epoch(0)))
        return out

    def exec_argv(self, container_id: str, opts: ExecOptions) -> list[str]:
        task, _ = self.tasks[container_id]
        return runc_exec_argv(task.runc_root, container_id, opts)

    async def signal(self, container_id: str, signum: int) -> None:
        self.tasks[container_id][0].runc("kill", container_id, str(signum))

    async def remove(self, container_id: str) -> None:
        task, _ = self.tasks.pop(container_id)
        task.close()


def web_view(task: RuncTask, log_path: Path, started: str) -> ContainerView:
    return ContainerView(
        id=task.container_id,
        name=f"web.1.{task.container_id[:25]}",
        image="busybox:latest",
        image_id="sha256:" + "b" * 64,
        created=started,
        status="running",
        started_at=started,
        entrypoint=("sh", "-c"),
        cmd=("echo ready; exec sleep 3600",),
        env=("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
             "TASK_ENV=from-spec"),
        user="root",
        working_dir="/",
        hostname="web-1",
        labels={
            "com.docker.swarm.service.name": "web",
            "com.docker.swarm.service.id": "s" * 25,
            "com.docker.swarm.task.id": task.container_id[:25],
            "com.docker.swarm.task.name": f"web.1.{task.container_id[:25]}",
            "com.docker.swarm.node.id": "n" * 25,
        },
        memory=MEMORY_LIMIT,
        pids_limit=PIDS_LIMIT,
        nano_cpus=500_000_000,
        cap_drop=("NET_RAW",),
        mounts=({"Type": "volume", "Name": "webdata", "Source": "", "Destination": "/data",
                 "Driver": "local", "Mode": "z", "RW": True, "Propagation": ""},),
        networks={"ingress": NetworkAttachment("i" * 25, "10.0.0.5", 24)},
        log_path=log_path,
        cgroup_path=task.cgroup,
    )

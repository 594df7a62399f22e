"""Container start: assigned -> running p50/p99 of a task of an image (oci runtime, runc)
against the same program as a host process (exec runtime), side by side in one 1-node lab;
first pull of a ~5 MB image from the lab registry; disk used by 100 tasks of one image.

    .venv/bin/python bench/container_start.py [--rounds 10] [--burst 50] [--many 100]

Latency: the store's own task events (`GET /events?since=..&until=..`, type `task`, shoal's
task events with `state.new`) give when each task became `assigned` and `running`. One task at a
time (`--rounds` services of 1 replica, oci and exec alternating), then `--burst` replicas
of one service at once. The image is pinned by digest (as the docker CLI pins it) and
already on the node, so the oci figure is the runtime's (bundle, overlay, runc), not a pull.
Disk: `--many` replicas of busybox; what the node's disk holds beyond the image's unpacked
root = the bundles without their overlay mount points (upper + work dirs, config, /etc files).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from shoal.client import Client
from shoal.lab import Lab
from shoal.lab import images as test_images

REGISTRY = "198.18.0.3:5000"
EXEC_LABELS = {"shoal.runtime": "exec"}


class TaskEvents:
    """When each task reached each state: the store's recent events (`since`, `until`)."""

    def __init__(self, api: Client) -> None:
        self._api = api
        self.since = time.time() - 1

    def at(self) -> dict[str, dict[str, float]]:
        params = {"since": f"{self.since:.6f}", "until": f"{time.time() + 0.01:.6f}",
                  "filters": {"type": ["task"]}}  # fmt: skip
        text = self._api.get("/events", params)
        seen: dict[str, dict[str, float]] = {}
        for line in (text if isinstance(text, str) else json.dumps(text)).splitlines():
            if not line.strip():
                continue
            msg = json.loads(line)
            attrs = msg.get("Actor", {}).get("Attributes", {})
            # the scheduler may create a task on its node at once: then `create` is `assigned`
            state = attrs.get("state.new") or ("assigned" if msg["Action"] == "create"
                                               and attrs.get("node") else "")  # fmt: skip
            if state:
                seen.setdefault(msg["Actor"]["ID"], {}).setdefault(state, msg["timeNano"] / 1e9)
        return seen

    def latencies(self, task_ids: set[str]) -> list[float] | None:
        """assigned -> running of every task in `task_ids`, once all have run."""
        at = self.at()
        seen = [at.get(t, {}) for t in task_ids]
        if not all("assigned" in s and "running" in s for s in seen):
            return None
        self.since = time.time() - 1
        return [s["running"] - s["assigned"] for s in seen]


def wait(what: str, check: Any, timeout: float = 300) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise SystemExit(f"timed out waiting for {what}")


def spec(name: str, image: str, replicas: int, exec_runtime: bool) -> dict[str, Any]:
    container: dict[str, Any] = {"Image": image, "Args": ["sleep", "100000"]}
    if exec_runtime:  # the same program as a host process
        container = {"Image": "busybox", "Args": ["sleep", "100000"], "Labels": EXEC_LABELS}
    else:
        container["Command"] = container.pop("Args")
    return {"Name": name, "TaskTemplate": {"ContainerSpec": container},
            "Mode": {"Replicated": {"Replicas": replicas}}}  # fmt: skip


def run_service(api: Client, events: TaskEvents, body: dict[str, Any]) -> list[float]:
    """Create, wait for every replica running, remove and wait until its tasks are gone."""
    created = api.post("/services/create", body)
    replicas = body["Mode"]["Replicated"]["Replicas"]

    def tasks() -> set[str] | None:
        found = {t["ID"] for t in api.get("/tasks", {"filters": {"service": [body["Name"]]}})}
        return found if len(found) >= replicas else None

    ids = wait("the tasks", tasks)
    samples = wait("every task running", lambda: events.latencies(ids))
    api.delete(f"/services/{created['ID']}")
    wait("the tasks removed", lambda: not api.get("/tasks"), timeout=600)
    return samples


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] * 1000


def report(title: str, oci: list[float], exe: list[float]) -> None:
    print(f"{title}: {len(oci)} samples each")
    for name, samples in (("oci (runc) ", oci), ("exec (host)", exe)):
        print(f"  {name}: p50 {pct(samples, 0.5):7.1f} ms   p99 {pct(samples, 0.99):7.1f} ms")
    print(f"  ratio oci/exec: p50 {pct(oci, 0.5) / pct(exe, 0.5):.2f}  "
          f"p99 {pct(oci, 0.99) / pct(exe, 0.99):.2f}")  # fmt: skip


def first_pull(lab: Lab) -> None:
    """~5 MB image (bulky): the daemon's first pull against `skopeo copy` alone."""
    layout = test_images.build("bulky")
    blobs = sum(f.stat().st_size for f in (layout / "blobs" / "sha256").iterdir())
    ref = f"{REGISTRY}/bulky:first"
    test_images.push("bulky", ref, netns=lab.layout.netns("client"))
    with tempfile.TemporaryDirectory() as d:
        skopeo = timed(lab, ["skopeo", "copy", "--quiet", "--src-tls-verify=false",
                             f"docker://{ref}", f"oci:{d}/l:x"])  # fmt: skip
    shoal = timed(lab, ["docker", "pull", "-q", ref])
    print(f"first pull of {blobs / 1e6:.1f} MB (bulky) from {REGISTRY}: shoal "
          f"{shoal * 1000:.0f} ms, skopeo copy alone {skopeo * 1000:.0f} ms, "
          f"ratio {shoal / skopeo:.2f}")


def timed(lab: Lab, argv: list[str]) -> float:
    start = time.perf_counter()
    proc = lab.exec("h1", argv, capture=True, timeout=300)
    if proc.returncode != 0:
        raise SystemExit(f"{argv}: {proc.stderr}")
    return time.perf_counter() - start


def tree_bytes(path: Path, skip: str = "") -> int:
    total = 0
    for root, dirs, files in os.walk(path):
        if skip and skip in dirs:
            dirs.remove(skip)  # the overlay's mount point: the image seen through it
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
            except OSError:
                continue
        total += sum(os.lstat(os.path.join(root, d)).st_blocks * 512 for d in dirs)
    return total


def disk_of_many(lab: Lab, api: Client, image: str, many: int) -> None:
    root = lab.layout.data_root("h1")
    created = api.post("/services/create", spec("many", image, many, exec_runtime=False))

    def running() -> bool:
        found = api.get("/tasks", {"filters": {"service": ["many"]}})
        return sum(t["Status"]["State"] == "running" for t in found) >= many

    began = time.monotonic()
    wait(f"{many} tasks running", running, timeout=900)
    took = time.monotonic() - began
    bundles = root / "oci" / "bundles"
    beyond = tree_bytes(bundles, skip="rootfs")
    uppers = sum(tree_bytes(b / "upper") for b in bundles.iterdir())
    image_bytes = tree_bytes(root / "images")
    print(f"{many} tasks of one image on one node (all running after {took:.0f} s): "
          f"image store (busybox + bulky) {image_bytes / 1e6:.1f} MB once; "
          f"beyond it {beyond / 1e6:.2f} MB "
          f"({beyond / many / 1e3:.1f} kB a task, of which upper dirs {uppers / 1e3:.0f} kB "
          "in all)")
    api.delete(f"/services/{created['ID']}")
    wait("the tasks removed", lambda: not api.get("/tasks"), timeout=900)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--burst", type=int, default=50)
    parser.add_argument("--many", type=int, default=100)
    args = parser.parse_args()
    lab = Lab("bstart")
    lab.down()
    try:
        lab.up(nodes=1)
        first_pull(lab)
        test_images.push("busybox", f"{REGISTRY}/busybox:bench", netns=lab.layout.netns("client"))
        with lab.client("h1", timeout=120) as api:
            digest = api.get(f"/distribution/{REGISTRY}/busybox:bench/json")["Descriptor"]["digest"]
            image = f"{REGISTRY}/busybox@{digest}"
            timed(lab, ["docker", "pull", "-q", image])
            events = TaskEvents(api)
            oci: list[float] = []
            exe: list[float] = []
            for i in range(args.rounds):
                oci += run_service(api, events, spec(f"o{i}", image, 1, exec_runtime=False))
                exe += run_service(api, events, spec(f"e{i}", image, 1, exec_runtime=True))
            report("1 task at a time, assigned -> running", oci, exe)
            burst_oci = run_service(api, events, spec("ob", image, args.burst, False))
            burst_exe = run_service(api, events, spec("eb", image, args.burst, True))
            report(f"{args.burst} tasks at once, assigned -> running", burst_oci, burst_exe)
            disk_of_many(lab, api, image, args.many)
    finally:
        lab.down()


if __name__ == "__main__":
    if os.geteuid() != 0:
        raise SystemExit("run as root (it builds a lab)")
    main()

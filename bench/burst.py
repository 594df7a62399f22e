"""Tasks under load (issue 13): the 300-replica burst, the same with the leader's daemon
killed -9 mid-way, create 3 -> all answering through the mesh, scale 3 -> 30.

    .venv/bin/python bench/burst.py [--replicas 300] [--nodes 5] [--managers 3] [--big]
        [--baseline /work/wt-burst-base] [--only burst,kill,serve,scale] [--runtime oci]

Real containers (runc) of the lab registry's busybox/whoami images. Each code (the
baseline tree given by --baseline, then this tree) gets a lab of its own (tag `bu...`),
one after the other in the same invocation: the daemons run the code of PYTHONPATH. `--big`
adds 1,000 replicas on 10 nodes. `--runtime exec` runs the same commands as host programs
(the floor where runc is too slow here).

How it measures without loading the leader: completion is polled on a follower's API
(GET /tasks with a service filter, every 0.5 s); the figures come from the tasks' own
`Status.Timestamp` (set by the agent when it reached the state, same machine clock), so
the poll's period does not round them. Printed per code: seconds from the create (or
update) request to the last task running, nodes marked down during the run, tasks left
non-terminal with desired state shutdown 30 s after the command ("limbo"), and slots
without exactly one running task. Then the ratio this/baseline of every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from shoal.client import Client  # noqa: E402
from shoal.lab import Lab  # noqa: E402
from shoal.lab import images as test_images  # noqa: E402

REGISTRY = "198.18.0.3:5000"
EXEC = {"shoal.runtime": "exec"}
TERMINAL = {"complete", "failed", "shutdown", "rejected", "orphaned", "remove"}


def stamp(text: str) -> float:
    """RFC 3339 with nanoseconds (Go's) -> epoch seconds."""
    if "." in text:
        head, frac = text.rstrip("Z").split(".", 1)
        digits = "".join(c for c in frac if c.isdigit())
        tz = frac[len(digits):] or "+00:00"
        return datetime.fromisoformat(f"{head}.{digits[:6]}{tz}").timestamp()
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class Cluster:
    """A lab running one code tree, the leader known, polls sent to a follower."""

    def __init__(self, tag: str, code: str, nodes: int, managers: int, runtime: str) -> None:
        os.environ["PYTHONPATH"] = code  # what the lab's daemons import
        self.code, self.runtime = code, runtime
        self.lab = Lab(tag, ready_timeout=90.0)
        self.lab.down()
        self.lab.up(nodes=nodes, managers=managers)
        self.managers = self.lab.hosts()[:managers]
        for name in ("busybox", "whoami"):
            test_images.push(name, f"{REGISTRY}/{name}:burst",
                             netns=self.lab.layout.netns("client"))
        self.wait_nodes(nodes)

    def api(self, host: str) -> Client:
        return self.lab.client(host, timeout=120)

    def leader(self) -> str:
        for host in self.managers:
            try:
                with self.api(host) as api:
                    for node in api.get("/nodes"):
                        if (node.get("ManagerStatus") or {}).get("Leader"):
                            return str(node["Description"]["Hostname"]).removeprefix("shoal-")
            except Exception:
                continue
        raise RuntimeError("no manager names a leader")

    def poller(self, avoid: str = "") -> str:
        leader = avoid or self.leader()
        return next(h for h in self.managers if h != leader)

    def wait_nodes(self, count: int, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.api(self.managers[0]) as api:
                if sum(n["Status"]["State"] == "ready" for n in api.get("/nodes")) >= count:
                    return
            time.sleep(0.5)
        raise SystemExit(f"fewer than {count} nodes ready")

    def spec(self, name: str, image: str, replicas: int, port: int, args: list[str]) -> dict:
        container: dict[str, Any] = {"Image": f"{REGISTRY}/{image}:burst", "Args": args}
        if self.runtime == "exec":
            # the host's programs: shoal's whoami, or the host's busybox (`busybox httpd`)
            container = ({"Image": "shoal", "Labels": EXEC, "Args": ["whoami", "--port", "80"]}
                         if image == "whoami" else {"Image": "busybox", "Labels": EXEC,
                                                    "Args": args})  # fmt: skip
        return {"Name": name, "TaskTemplate": {"ContainerSpec": container},
                "Mode": {"Replicated": {"Replicas": replicas}},
                "EndpointSpec": {"Ports": [{"TargetPort": 80, "PublishedPort": port}]}}  # fmt: skip

    def remove_all(self, wait: float = 90.0) -> int:
        """Remove every service; the tasks still in the store after `wait` s (printed)."""
        deadline = time.monotonic() + wait
        left = -1
        while time.monotonic() < deadline:
            try:
                with self.api(self.leader()) as api:
                    for svc in api.get("/services"):
                        api.delete(f"/services/{svc['ID']}")
                    left = len(api.get("/tasks"))
                    if not left:
                        return 0
            except Exception as exc:  # a busy or restarting leader: ask again
                print(f"  remove: {str(exc)[:90]}", flush=True)
            time.sleep(1.0)
        print(f"  remove: {left} task(s) still in the store {wait:.0f}s after service rm",
              flush=True)
        return left

    def down(self) -> None:
        self.lab.down()


def outcome(tasks: list[dict], nodes: list[dict], replicas: int, since: float) -> dict:
    running = [t for t in tasks if t["DesiredState"] == "running"
               and t["Status"]["State"] == "running"]  # fmt: skip
    per_slot: dict[int, int] = {}
    for t in running:
        per_slot[t["Slot"]] = per_slot.get(t["Slot"], 0) + 1
    bad_slots = sum(per_slot.get(s, 0) != 1 for s in range(1, replicas + 1))
    limbo = sum(t["DesiredState"] in ("shutdown", "remove") and t["Status"]["State"] not in TERMINAL
                for t in tasks)  # fmt: skip
    last = max((stamp(t["Status"]["Timestamp"]) for t in running), default=since)
    return {"running": len(running), "bad_slots": bad_slots, "limbo": limbo,
            "down": [n["Description"]["Hostname"] for n in nodes
                     if n["Status"]["State"] == "down"],
            "all_running_s": last - since}  # fmt: skip


def watch(c: Cluster, name: str, replicas: int, since: float, poll: str, settle: float,
          on_progress: Any = None, timeout: float = 150) -> dict:
    """Poll `poll` until every slot runs one task; then until `settle` s after `since`."""
    down_seen: set[str] = set()
    done: dict | None = None
    deadline = since + timeout
    while time.time() < deadline:
        try:
            with c.api(poll) as api:
                tasks = api.get("/tasks", {"filters": {"service": [name]}})
                nodes = api.get("/nodes")
        except Exception as exc:  # a restarting or busy manager: ask the next one
            print(f"  poll of {poll} failed: {str(exc)[:90]}", flush=True)
            poll = c.managers[(c.managers.index(poll) + 1) % len(c.managers)]
            time.sleep(0.5)
            continue
        now = outcome(tasks, nodes, replicas, since)
        down_seen |= set(now["down"])
        if on_progress is not None:
            poll = on_progress(now) or poll
        if done is None and now["running"] >= replicas and now["bad_slots"] == 0:
            done = now
        if done is not None and time.time() >= since + settle:
            now["all_running_s"] = done["all_running_s"]
            now["down"] = sorted(down_seen)
            return now
        time.sleep(0.5)
    now["all_running_s"] = float("nan")
    now["down"] = sorted(down_seen)
    return now


def burst(c: Cluster, replicas: int, kill: bool) -> dict:
    name = "burstk" if kill else "burst"
    body = c.spec(name, "busybox", replicas, 8092 if kill else 8090, ["httpd", "-f", "-p", "80"])
    leader = c.leader()
    poll = c.poller(leader)
    state = {"killed": False}

    def progress(now: dict) -> str | None:
        if kill and not state["killed"] and now["running"] >= replicas // 3:
            print(f"  kill -9 of the leader {leader}'s daemon at {now['running']} running",
                  flush=True)
            c.lab.kill_daemon(leader)
            c.lab.start(leader, wait=False)
            state["killed"] = True
        return None

    since = time.time()
    with c.api(leader) as api:
        api.post("/services/create", body)
    return watch(c, name, replicas, since, poll, settle=30.0, on_progress=progress)


def serve(c: Cluster) -> float:
    """Create 3 whoami replicas on 8091: seconds until 3 distinct tasks answered via the mesh.
    The image is pulled on every node first (the figure is the control plane's and the
    task start's, as with a local image)."""
    for host in c.lab.hosts():
        c.lab.exec(host, ["docker", "pull", "-q", f"{REGISTRY}/whoami:burst"], capture=True)
    targets = [f"{c.lab.address(h)}:8091" for h in c.lab.hosts()]
    body = c.spec("serve", "whoami", 3, 8091, [])
    if c.runtime != "exec":
        body["TaskTemplate"]["ContainerSpec"].pop("Args")  # the image's Cmd
    script = ("import json,sys,time\nfrom shoal.lab.probe import http_once\n"
              f"t={targets!r}\nseen={{}}\nend=time.time()+60\ni=0\n"
              "while len(seen)<3 and time.time()<end:\n"
              "    r=http_once(t[i%len(t)],'/',0.5); i+=1\n"
              "    b=r.get('body') or ''\n"
              "    if r['ok'] and b: seen.setdefault(b.splitlines()[0] if 'Hostname' in b"
              " else b, time.time())\n"
              "print(json.dumps(seen))\n")  # fmt: skip
    probe = c.lab.popen("client", [sys.executable, "-c", script], stdout=-1, text=True)
    time.sleep(0.3)  # the probe is up and looping
    since = time.time()
    with c.api(c.leader()) as api:
        api.post("/services/create", body)
    out, _ = probe.communicate(timeout=90)
    seen = json.loads(out)
    took = max(seen.values()) - since if len(seen) >= 3 else float("nan")
    return took


def scale(c: Cluster) -> float:
    """serve's 3 replicas -> 30: seconds from the update to the 30th running."""
    with c.api(c.leader()) as api:
        svc = api.get("/services/serve")
        spec = svc["Spec"]
        spec["Mode"]["Replicated"]["Replicas"] = 30
        since = time.time()
        api.post(f"/services/{svc['ID']}/update", spec,
                 params={"version": svc["Version"]["Index"]})  # fmt: skip
    result = watch(c, "serve", 30, since, c.poller(), settle=0.0)
    c.remove_all()
    return float(result["all_running_s"])


def run_code(code: str, tag: str, args: argparse.Namespace, nodes: int, replicas: int,
             parts: list[str]) -> dict[str, Any]:
    print(f"== {code}: {nodes} nodes, {args.managers} managers, load {os.getloadavg()}",
          flush=True)
    c = Cluster(tag, code, nodes, args.managers, args.runtime)
    figures: dict[str, Any] = {}
    try:
        if "serve" in parts:
            figures["serve"] = serve(c)
            print(f"  create 3 -> 3 answering via the mesh: {figures['serve']:.2f}s", flush=True)
        if "scale" in parts:
            if "serve" not in parts:
                serve(c)
            figures["scale"] = scale(c)
            print(f"  scale 3 -> 30 running: {figures['scale']:.2f}s", flush=True)
        for kill in (False, True):
            if ("kill" if kill else "burst") not in parts:
                continue
            try:
                r = burst(c, replicas, kill)
            except Exception as exc:  # a phase that could not run is a figure too
                print(f"  {'kill' if kill else 'burst'} phase failed: {exc}", flush=True)
                r = {"all_running_s": float("nan"), "down": [], "limbo": -1, "bad_slots": -1}
            figures["kill" if kill else "burst"] = r
            print(f"  {replicas} replicas{' (leader killed)' if kill else ''}: all running after "
                  f"{r['all_running_s']:.1f}s, down {r['down']}, limbo {r['limbo']}, "
                  f"bad slots {r['bad_slots']}, load {os.getloadavg()[0]:.1f}", flush=True)
            figures[("kill" if kill else "burst") + "_left_after_rm"] = c.remove_all()
        if args.keep:
            input("lab kept up; Enter to take it down ")
    finally:
        c.down()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int, default=300)
    parser.add_argument("--nodes", type=int, default=5)
    parser.add_argument("--managers", type=int, default=3)
    parser.add_argument("--big", action="store_true", help="also 1,000 replicas on 10 nodes")
    parser.add_argument("--baseline", default="/work/wt-burst-base")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--only", default="serve,scale,burst,kill")
    parser.add_argument("--keep", action="store_true", help="wait for Enter before lab down")
    parser.add_argument("--runtime", choices=["oci", "exec"], default="oci")
    parser.add_argument("--tag", default="bu", help="lab tag prefix (<tag>t, <tag>b)")
    args = parser.parse_args()
    parts = args.only.split(",")
    shapes = [(args.nodes, args.replicas)] + ([(10, 1000)] if args.big else [])
    codes = ([] if args.no_baseline else [("baseline", args.baseline)]) + [("this", str(ROOT))]
    results: dict[tuple[str, int], dict[str, Any]] = {}
    for nodes, replicas in shapes:
        for label, code in codes:
            results[(label, nodes)] = run_code(code, f"{args.tag}{label[0]}", args, nodes, replicas,
                                               parts if nodes == args.nodes else ["burst"])
    print(f"\nsummary (load now {os.getloadavg()})")
    for nodes, _ in shapes:
        this = results[("this", nodes)]
        base = results.get(("baseline", nodes), {})
        for key, value in this.items():
            if key.endswith("_left_after_rm"):
                print(f"| {nodes} nodes {key} | this {value} | baseline {base.get(key)} |")
                continue
            mine = value if isinstance(value, float) else value["all_running_s"]
            theirs = base.get(key)
            theirs = theirs if isinstance(theirs, float) or theirs is None else \
                theirs["all_running_s"]
            ratio = f"{mine / theirs:.2f}x" if theirs else "-"
            extra = "" if isinstance(value, float) else \
                f" down {value['down']} limbo {value['limbo']} bad slots {value['bad_slots']}"
            print(f"| {nodes} nodes {key} | this {mine:.2f}s | baseline "
                  f"{theirs if theirs is None else f'{theirs:.2f}s'} | {ratio} |{extra}")


if __name__ == "__main__":
    if os.geteuid() != 0:
        raise SystemExit("run as root (it builds labs)")
    main()

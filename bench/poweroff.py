"""A node powered off under load: how long the other nodes keep failing mesh requests.

A global `shoal whoami` service (exec runtime) published on 8080 of every node of a running
lab (`shoal lab up --nodes 5 --managers 3`; SHOAL_LAB_TAG picks a tagged one). From the lab
client, 8 threads send requests (a new connection each, 1 s timeout) round-robin to the
nodes that stay on; then `lab stop VICTIM`. The figure is the time from the stop to the
last failed request (0 when none failed), median of --runs; the victim is powered on again
between runs and its task waited for.

    .venv/bin/python bench/poweroff.py [--runs 5] [--victim h5] [--after 12]   (as root)

No baseline in the same run: the baseline is the code before the change, measured on a lab
started from it (the figures of both are in docs/design/control-plane-load.md).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from shoal.lab.lab import Lab
from shoal.lab.probe import http_once

SERVICE = "poweroff"
PORT = 8080


def load(targets: list[str], seconds: float) -> None:
    """In the client namespace: one JSON line per failed request, then a summary line."""
    stop_at = time.time() + seconds
    lock = threading.Lock()
    counts = {"ok": 0, "failed": 0}

    def worker(offset: int) -> None:
        i = offset
        while time.time() < stop_at:
            target = targets[i % len(targets)]
            i += 1
            began = time.time()
            result = http_once(target, "/", 1.0)
            with lock:
                if result["ok"]:
                    counts["ok"] += 1
                else:
                    counts["failed"] += 1
                    print(json.dumps({"at": began, "target": target,
                                      "error": result.get("error")}), flush=True)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps({"summary": counts}), flush=True)


def ensure_service(lab: Lab) -> None:
    api = lab.client("h1")
    if not any(s["Spec"]["Name"] == SERVICE for s in api.get("/services")):
        api.post("/services/create", {
            "Name": SERVICE,
            "TaskTemplate": {"ContainerSpec": {
                "Image": "shoal", "Args": ["whoami", "--port", "80"],
                "Labels": {"shoal.runtime": "exec"}}},
            "Mode": {"Global": {}},
            "EndpointSpec": {"Ports": [{"TargetPort": 80, "PublishedPort": PORT}]},
        })
    wait_running(lab, len(lab.hosts()))


def wait_running(lab: Lab, count: int, timeout: float = 90.0) -> None:
    api = lab.client("h1")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        tasks = api.get("/tasks", params={"filters": {"service": {SERVICE: True},
                                                      "desired-state": {"running": True}}})
        if sum(t["Status"]["State"] == "running" for t in tasks) >= count:
            return
        time.sleep(0.5)
    raise SystemExit(f"{SERVICE}: fewer than {count} running tasks after {timeout:.0f}s")


def wait_routed(lab: Lab, victim: str, timeout: float = 60.0) -> None:
    """Until the mesh of every other host sends some connections to the victim's task
    (a restarted node's endpoint must be back everywhere before it is powered off)."""
    deadline = time.monotonic() + timeout
    script = (f"for i in $(seq 12); do curl -s -m 1 $T:{PORT}; done"
              " | grep -c '^node: shoal-{victim}$'".replace("{victim}", victim))
    while time.monotonic() < deadline:
        routed = [
            lab.exec("client", ["sh", "-c", script.replace("$T", lab.address(h))],
                     capture=True).stdout.strip() not in ("", "0")
            for h in lab.hosts() if h != victim
        ]
        if all(routed):
            return
        time.sleep(0.5)
    raise SystemExit(f"the mesh does not route to {victim}'s task after {timeout:.0f}s")


def one_run(lab: Lab, victim: str, after: float) -> tuple[float, int, int]:
    """(seconds from the stop to the last failure, failed, ok) of one power-off."""
    others = [f"{lab.address(h)}:{PORT}" for h in lab.hosts() if h != victim]
    wait_routed(lab, victim)
    warm = 2.0
    proc = lab.popen("client", [sys.executable, __file__, "--load", ",".join(others),
                                str(warm + after)], stdout=-1, text=True)
    time.sleep(warm)
    stopped = time.time()
    lab.stop(victim)
    out, _ = proc.communicate(timeout=warm + after + 30)
    lines = [json.loads(line) for line in out.splitlines() if line.strip()]
    fails = [x["at"] for x in lines if "at" in x and x["at"] >= stopped - 0.1]
    counts = next(x["summary"] for x in lines if "summary" in x)
    last = max(fails) - stopped if fails else 0.0
    late = collections.Counter((x["target"], str(x.get("error"))[:60]) for x in lines
                               if "at" in x and x["at"] - stopped > 1.0)  # fmt: skip
    if late:  # what failed more than 1 s after the stop (a slow mesh, or the machine?)
        print(f"  failed > 1 s after the stop: {dict(late)}", flush=True)
    lab.start(victim)
    wait_running(lab, len(lab.hosts()))
    return max(0.0, last), counts["failed"], counts["ok"]


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--load":
        load(sys.argv[2].split(","), float(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--victim", default="h5")
    parser.add_argument("--after", type=float, default=12.0, help="load seconds after the stop")
    args = parser.parse_args()
    lab = Lab(os.environ.get("SHOAL_LAB_TAG", ""))
    if not lab.is_up():
        raise SystemExit("no lab is up: shoal lab up --nodes 5 --managers 3")
    ensure_service(lab)
    runs = []
    for i in range(args.runs):
        last, failed, ok = one_run(lab, args.victim, args.after)
        runs.append(last)
        print(f"run {i + 1}: last failed request {last:.2f}s after the stop "
              f"({failed} failed, {ok} ok)", flush=True)
    print(f"| power-off of {args.victim}, last failed request after the stop | "
          f"median {statistics.median(runs):.2f}s | max {max(runs):.2f}s | {args.runs} runs |")


if __name__ == "__main__":
    main()

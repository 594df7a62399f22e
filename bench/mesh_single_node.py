"""Single-node routing mesh vs direct: 1 KiB HTTP, requests/s and latency, same run.

Builds a 1-node lab (its own tag), runs one `shoal whoami` task published on 8080, gives the
lab's client a route to the node's task subnet (inside the lab only), and drives `wrk` from
the client against (a) the task's own address and (b) the node's published port, with
keep-alive and with a new connection per request. Prints each figure and mesh/direct ratios.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from labload import running_tasks, wrk

from shoal.lab.lab import Lab

TAG = "bench"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "wrk"], check=True, stdout=subprocess.DEVNULL
        )
    lab = Lab(TAG)
    lab.down()
    lab.up(nodes=1)
    try:
        client = lab.client("h1")
        sid = client.post(
            "/services/create",
            {
                "Name": "bench",
                "TaskTemplate": {
                    "ContainerSpec": {
                        "Image": "shoal",
                        "Labels": {"shoal.runtime": "exec"},  # a host program (exec runtime)
                        "Args": ["whoami", "--port", "80"],
                    }
                },
                "Mode": {"Replicated": {"Replicas": 1}},
                "EndpointSpec": {"Ports": [{"TargetPort": 80, "PublishedPort": 8080}]},
            },
        )["ID"]
        task = running_tasks(lab, sid, 1)[0]
        node = client.get(f"/nodes/{task['NodeID']}")
        node_addr = lab.address("h1")
        subprocess.run(
            [
                "ip",
                "-n",
                lab.layout.netns("client"),
                "route",
                "replace",
                node["Subnet"],
                "via",
                node_addr,
            ],
            check=True,
        )
        direct = f"http://{task['Address']}:80/data?size=1024"
        mesh = f"http://{node_addr}:8080/data?size=1024"
        deadline = time.monotonic() + 10
        while lab.exec("client", ["curl", "-sf", "-o", "/dev/null", mesh]).returncode != 0:
            if time.monotonic() > deadline:
                raise SystemExit("the published port did not answer within 10 s")
            time.sleep(0.1)
        rows = []
        for close in (False, True):
            mode = "new connection" if close else "keep-alive"
            d = wrk(lab, direct, args.seconds, args.connections, close)
            m = wrk(lab, mesh, args.seconds, args.connections, close)
            rows.append((mode, d, m))
        print(
            f"\n1 KiB HTTP from the lab client, wrk -t2 -c{args.connections} "
            f"-d{args.seconds}s, one whoami task"
        )
        print(f"{'mode':<16}{'path':<10}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}")
        for mode, d, m in rows:
            for name, r in (("direct", d), ("mesh", m)):
                print(
                    f"{mode:<16}{name:<10}{r['rps']:>10.0f}{r['p50']:>9.2f}{r['p99']:>9.2f}"
                    f"{r['errors']:>8.0f}"
                )
            print(
                f"{mode:<16}{'ratio':<10}{m['rps'] / d['rps']:>10.2f}"
                f"{m['p50'] / d['p50']:>9.2f}{m['p99'] / d['p99']:>9.2f}   (mesh / direct)"
            )
    finally:
        lab.down()


if __name__ == "__main__":
    main()

"""Embedded DNS from one task: queries/s and p99 against the real server in a netns.

A namespace of this bench's making (`shoal-dnsb-<hex>`, deleted at the end) stands for a
task; the server runs on this process's loop with a table of --services services of
--tasks tasks each. A client process inside the namespace sends --queries sequential UDP
queries for a cluster name (`tasks.svc0`, the table lookup path) and, side by side in the
same run, for a name the server refuses without a forwarder (the codec-only floor). Prints
both rates, p50/p99 latency and the ratio. Needs root.

    .venv/bin/python bench/dns_embedded.py [--queries 3000] [--services 50] [--tasks 6]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

from shoal.agent.dns.server import NodeDns
from shoal.gossip.endpoints import EndpointEntry, NetworkAddress
from shoal.gossip.table import EndpointTable

CLIENT = """
import json, socket, sys, time
import dns.message
names, count = sys.argv[1].split(","), int(sys.argv[2])
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); sock.settimeout(2)
out = {}
for name in names:
    wire = dns.message.make_query(name, "A").to_wire()
    lat = []
    began = time.perf_counter()
    for _ in range(count):
        t = time.perf_counter(); sock.sendto(wire, ("127.0.0.11", 53)); sock.recv(4096)
        lat.append(time.perf_counter() - t)
    total = time.perf_counter() - began
    lat.sort()
    out[name] = {"qps": count / total, "p50_ms": lat[len(lat) // 2] * 1e3,
                 "p99_ms": lat[int(len(lat) * 0.99)] * 1e3}
print(json.dumps(out))
"""


def table(services: int, tasks: int) -> EndpointTable:
    t = EndpointTable()
    t.set(EndpointEntry("me", "me", "n1", "198.19.1.2", True, service_name="client",
                        networks=(NetworkAddress("net", "198.18.1.250", "198.18.1.251"),)))
    for s in range(services):
        for k in range(tasks):
            t.set(EndpointEntry(f"s{s}", f"s{s}t{k}", "n2", "198.19.2.2", True,
                                service_name=f"svc{s}",
                                networks=(NetworkAddress("net", f"198.18.{2 + s}.{k + 3}",
                                                         f"198.18.{2 + s}.2"),)))
    return t


async def run(args: argparse.Namespace, ns: str) -> dict[str, dict[str, float]]:
    server = NodeDns("n1", table(args.services, args.tasks),
                     lambda t: Path("/run/netns", ns) if t == "me" else Path("/nonexistent"),
                     None)
    runner = asyncio.ensure_future(server.run())
    try:
        while "me" not in server.tasks:
            await asyncio.sleep(0.01)
        proc = await asyncio.create_subprocess_exec(
            "ip", "netns", "exec", ns, sys.executable, "-c", CLIENT,
            "tasks.svc0,refused.example", str(args.queries), stdout=asyncio.subprocess.PIPE)
        out, _ = await proc.communicate()
        result: dict[str, dict[str, float]] = json.loads(out)
        return result
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=3000)
    parser.add_argument("--services", type=int, default=50)
    parser.add_argument("--tasks", type=int, default=6)
    args = parser.parse_args()
    ns = f"shoal-dnsb-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        res = asyncio.run(run(args, ns))
    finally:
        subprocess.run(["ip", "netns", "delete", ns], check=False)
    for name, r in res.items():
        print(f"{name:18} {r['qps']:8.0f} q/s  p50 {r['p50_ms']:.3f} ms  p99 {r['p99_ms']:.3f} ms")
    print("load average " + " ".join(f"{x:.1f}" for x in os.getloadavg()))
    ratio = res["tasks.svc0"]["qps"] / res["refused.example"]["qps"]
    print(f"cluster lookup / refused-name floor: {ratio:.2f}x")


if __name__ == "__main__":
    main()

"""VIP path vs task-address path on one node: new-connection and keep-alive req/s and p99.

Namespaces of this bench's making (`shoal-vipb-<hex>-{h,c,b}`, deleted at the end): a node
`h` running the service-network data plane (`shoal.agent.svcnet`), a client task `c` and a
backend task `b` on one network. The backend answers a one-line TCP protocol; the client
measures, interleaved in the same run, --seconds of requests to the VIP (nftables DNAT) and
to the task's address (plain routing through the node). Prints both and the ratio. Root.

    .venv/bin/python bench/vip_path.py [--seconds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VIP, BACK, CLIENT_ADDR = "198.18.1.2", "198.18.1.3", "198.18.1.5"

APPLY = """
import asyncio, sys
from pathlib import Path
from shoal.agent.exec.netsetup import set_sysctl
from shoal.agent.svcnet.apply import ServiceNetworks
from shoal.gossip.endpoints import EndpointEntry, NetworkAddress
from shoal.gossip.table import EndpointTable
prefix = sys.argv[1]
t = EndpointTable()
for task, addr, vip in (("c", "198.18.1.5", "198.18.1.4"), ("b", "198.18.1.3", "198.18.1.2")):
    t.set(EndpointEntry("s" + task, task * 12, "n1", "198.19.1.9", True, networks=(
        NetworkAddress("netbench0000", addr, vip, (), 24, "198.18.1.1"),)))
set_sysctl("net.ipv4.ip_forward", "1")
nets = ServiceNetworks("n1", t, dict, lambda i: Path("/run/netns", prefix + i[0]))
asyncio.run(nets.apply())
"""
SERVE = """
import socket, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("198.18.1.3", 8080)); s.listen(128); print("ready", flush=True)
def one(c):
    with c:
        f = c.makefile("rb")
        for line in f:
            c.sendall(b"ok\\n")
while True:
    conn, _ = s.accept(); threading.Thread(target=one, args=(conn,), daemon=True).start()
"""
MEASURE = """
import json, socket, sys, time
seconds = float(sys.argv[1]); out = {}
def run(addr, keep):
    lat = []; end = time.perf_counter() + seconds
    s = socket.create_connection((addr, 8080)) if keep else None
    while time.perf_counter() < end:
        t = time.perf_counter()
        if not keep:
            s = socket.create_connection((addr, 8080))
        s.sendall(b"x\\n"); s.recv(16)
        if not keep:
            s.close()
        lat.append(time.perf_counter() - t)
    lat.sort()
    return {"rps": len(lat) / seconds, "p99_ms": lat[int(len(lat) * 0.99)] * 1e3}
for keep in (False, True):
    for name, addr in (("vip", sys.argv[2]), ("task", sys.argv[3])):
        out[f"{name}/{'keepalive' if keep else 'new-conn'}"] = run(addr, keep)
print(json.dumps(out))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    prefix = f"shoal-vipb-{secrets.token_hex(2)}-"
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(REPO)}
    server = None
    try:
        for role in "hcb":
            subprocess.run(["ip", "netns", "add", prefix + role], check=True)
        subprocess.run(["ip", "netns", "exec", prefix + "h", sys.executable, "-c", APPLY,
                        prefix], check=True, env=env)
        server = subprocess.Popen(["ip", "netns", "exec", prefix + "b", sys.executable, "-c",
                                   SERVE], stdout=subprocess.PIPE, text=True)
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        out = subprocess.run(["ip", "netns", "exec", prefix + "c", sys.executable, "-c",
                              MEASURE, str(args.seconds), VIP, BACK],
                             capture_output=True, text=True, check=True).stdout
        res = json.loads(out)
    finally:
        if server is not None:
            server.kill()
            server.wait(timeout=10)
        for role in "hcb":
            subprocess.run(["ip", "netns", "delete", prefix + role], check=False)
    for key, r in res.items():
        print(f"{key:18} {r['rps']:8.0f} req/s  p99 {r['p99_ms']:.3f} ms")
    print("load average " + " ".join(f"{x:.1f}" for x in os.getloadavg()))
    for mode in ("new-conn", "keepalive"):
        ratio = res[f"vip/{mode}"]["rps"] / res[f"task/{mode}"]["rps"]
        print(f"{mode}: VIP / task address = {ratio:.2f}x")


if __name__ == "__main__":
    main()

"""Service networks against the real kernel: bridges, task interfaces, VIP DNAT, isolation.

Namespaces of this test's making: a node `shoal-sn-<hex>-h` (stands for a lab host; the
data plane runs there) and tasks `...-c` (client, netA), `...-b` (backend, netA) and `...-o`
(netB). This file is also the driver that pytest runs inside the node namespace (`python
<this file> '<json>'`), as tests/integration/test_exec_runtime.py does. Everything lives in
those namespaces and goes with them in the fixture's finalizer, also when a test fails; the
backend servers are killed by pid.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.polling import until

REPO = Path(__file__).resolve().parents[2]
NET_A, NET_B = "netaaaaaaaaaaaa", "netbbbbbbbbbbbb"
VIP = "198.18.1.2"

SERVE = """
import socket, sys, threading
addr = sys.argv[1]
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); udp.bind((addr, 9000))
def echo():
    while True:
        data, peer = udp.recvfrom(100); udp.sendto(b"udp:" + data, peer)
threading.Thread(target=echo, daemon=True).start()
tcp = socket.socket(); tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
tcp.bind((addr, 8080)); tcp.listen(8); print("ready", flush=True)
while True:
    conn, _ = tcp.accept(); conn.sendall(b"hello from " + addr.encode()); conn.close()
"""
ASK = """
import socket, sys
addr, proto = sys.argv[1], sys.argv[2]
try:
    if proto == "tcp":
        s = socket.create_connection((addr, 8080), timeout=2); print(s.recv(100).decode())
    else:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2)
        s.sendto(b"hi", (addr, 9000)); print(s.recv(100).decode())
except OSError as exc:
    print("error", type(exc).__name__)
"""


def _entries(names: dict[str, str]) -> list[Any]:
    from shoal.gossip.endpoints import EndpointEntry, NetworkAddress

    def one(task: str, net: str, addr: str, vip: str) -> EndpointEntry:
        gw = addr.rsplit(".", 1)[0] + ".1"
        return EndpointEntry("s" + task, names[task], "n1", "198.19.1.9", True,
                             networks=(NetworkAddress(net, addr, vip, (), 24, gw),))

    return [one("c", NET_A, "198.18.1.5", "198.18.1.4"), one("b", NET_A, "198.18.1.3", VIP),
            one("o", NET_B, "198.18.2.3", "198.18.2.2")]


async def _drive(args: dict[str, Any]) -> dict[str, Any]:
    from shoal.agent.exec.netsetup import set_sysctl
    from shoal.agent.svcnet.apply import ServiceNetworks
    from shoal.gossip.table import EndpointTable

    table = EndpointTable()
    for e in _entries(args["names"]):
        table.set(e)
    by_id = {v: k for k, v in args["names"].items()}
    nets = ServiceNetworks("n1", table, dict,
                           lambda t: Path("/run/netns", args["prefix"] + by_id.get(t, "none")))
    set_sysctl("net.ipv4.ip_forward", "1")
    await nets.apply()
    out: dict[str, Any] = {"links": sorted(x.host_name for x in nets._links),
                           "bridges": [b.name for b in nets.applied.bridges]}
    if args["scenario"] == "up":
        out["opens"] = await _netlink_opens(nets, table)
    if args["scenario"] == "down":
        await nets.close()
    return out


async def _netlink_opens(nets: Any, table: Any) -> dict[str, int]:
    """How many netlink sockets each kind of pass opens once the plan is in place."""
    from shoal.agent.svcnet import apply as module
    from shoal.gossip.endpoints import EndpointEntry, NetworkAddress

    real, opened = module.Rtnl, [0]

    def counting(*a: Any, **kw: Any) -> Any:
        opened[0] += 1
        return real(*a, **kw)

    async def count(**kw: bool) -> int:
        opened[0] = 0
        await nets.apply(**kw)
        return opened[0]

    module.Rtnl = counting
    try:
        result = {"idle": await count()}
        # a task in the table whose namespace is not there yet: every pass tries for it
        late = EndpointEntry("slate", "late" * 6, "n1", "198.19.1.9", True,
                             networks=(NetworkAddress(NET_A, "198.18.1.9", VIP, (), 24,
                                                      "198.18.1.1"),))
        table.set(late)
        result["pending"] = await count() + await count()
        table.remove(late.task_id)
        await nets.apply()
        result["settled"] = await count()
        result["repair"] = await count(repair=True)
        return result
    finally:
        module.Rtnl = real


class Namespaces:
    def __init__(self) -> None:
        self.prefix = f"shoal-sn-{secrets.token_hex(2)}-"
        self.names = {t: secrets.token_hex(12) for t in "cbo"}
        self.procs: list[subprocess.Popen[str]] = []

    def ns(self, role: str) -> str:
        return self.prefix + role

    def run(self, role: str, *argv: str) -> str:
        proc = subprocess.run(["ip", "netns", "exec", self.ns(role), *argv],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.strip()

    def drive(self, scenario: str) -> dict[str, Any]:
        payload = json.dumps({"scenario": scenario, "prefix": self.prefix, "names": self.names})
        out = subprocess.run(
            ["ip", "netns", "exec", self.ns("h"), sys.executable, __file__, payload],
            capture_output=True, text=True, timeout=60,
            env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(REPO)},
        )
        assert out.returncode == 0, out.stderr
        result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
        return result

    def serve(self, role: str, addr: str) -> None:
        proc = subprocess.Popen(["ip", "netns", "exec", self.ns(role), sys.executable, "-c",
                                 SERVE, addr], stdout=subprocess.PIPE, text=True)
        self.procs.append(proc)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"

    def ask(self, role: str, addr: str, proto: str = "tcp") -> str:
        return self.run(role, sys.executable, "-c", ASK, addr, proto)

    def cleanup(self) -> None:
        for proc in self.procs:
            proc.kill()
            proc.wait(timeout=10)
        for role in "cboh":
            subprocess.run(["ip", "netns", "delete", self.ns(role)], check=False)


@pytest.fixture
def spaces() -> Iterator[Namespaces]:
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces")
    made = Namespaces()
    try:
        for role in "hcbo":
            subprocess.run(["ip", "netns", "add", made.ns(role)], check=True)
        yield made
    finally:
        made.cleanup()


@pytest.mark.lab
def test_vip_reaches_ready_tasks_and_other_networks_are_isolated(spaces: Namespaces) -> None:
    up = spaces.drive("up")
    assert sorted(up["bridges"]) == ["sn-netaaaaaaaa", "sn-netbbbbbbbb"]
    assert len(up["links"]) == 3
    # a pass over a plan already in place opens no netlink socket; one with a task whose
    # namespace is still missing keeps trying; the periodic repair pass reads the kernel
    opens = up["opens"]
    assert opens["idle"] == 0 and opens["settled"] == 0
    assert opens["pending"] >= 2 and opens["repair"] >= 1
    assert spaces.run("b", "ip", "-4", "-o", "addr", "show", "dev", "eth1").split()[3] == (
        "198.18.1.3/32"
    )
    spaces.serve("b", "198.18.1.3")
    # through the VIP, TCP and UDP; and straight to the task address
    assert spaces.ask("c", VIP) == "hello from 198.18.1.3"
    assert spaces.ask("c", VIP, "udp") == "udp:hi"
    assert spaces.ask("c", "198.18.1.3") == "hello from 198.18.1.3"
    # netB's task, even with a route towards netA through its gateway (and the backend one
    # back, as a task's default route via the node bridge would give), reaches nothing there
    spaces.run("o", "ip", "route", "add", "198.18.1.0/24", "via", "198.18.2.1", "dev", "eth1",
               "onlink")
    spaces.run("b", "ip", "route", "add", "198.18.2.0/24", "via", "198.18.1.1", "dev", "eth1",
               "onlink")
    assert spaces.ask("o", "198.18.1.3").startswith("error")
    assert spaces.ask("o", VIP).startswith("error")
    # down: links, bridges and the table are gone from the node namespace
    spaces.drive("down")
    links = spaces.run("h", "ip", "-o", "link", "show")
    assert "sn-net" not in links and "sv" not in links
    tables = spaces.run("h", "nft", "list", "tables")
    assert "shoal-svcnet" not in tables
    until(lambda: "eth1" not in spaces.run("c", "ip", "-o", "link", "show"),
          what="the client's eth1 went with its veth")


if __name__ == "__main__":
    def _main(raw: str) -> None:
        args = json.loads(raw)
        print(json.dumps(asyncio.run(_drive(args))))

    _main(sys.argv[1])

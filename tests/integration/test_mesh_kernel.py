"""The kernel mesh on real nftables, in namespaces of its own (`shoal-md-<pid>-*`).

    client (198.18.0.2) ── vc ── host (198.18.0.11; br0 198.19.1.1/24) ── t1/t2/t3 (.11/.12/.13)

The host namespace runs `KernelDataPlane` through `python -m shoal.mesh.driver`; each task
namespace runs `python -m shoal.workloads.whoami` (HTTP 80, UDP 53). Requests are made by a
small client program run inside the client, host or a task namespace. Nothing is sent
outside these namespaces, and nothing in the root namespace is changed.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shoal.mesh.model import Endpoint, MeshState, PortSpec
from shoal.mesh.traffic import PortTraffic, parse_counters

pytestmark = pytest.mark.lab

REPO = Path(__file__).resolve().parents[2]
PREFIX = f"shoal-md-{os.getpid()}"
HOST, CLIENT = f"{PREFIX}-h", f"{PREFIX}-c"
TASKS = {f"web.{i}": (f"{PREFIX}-t{i}", f"198.19.1.1{i}") for i in (1, 2, 3)}
NODE_ADDR = "198.18.0.11"
SUBNET = "198.19.1.0/24"

WEB = PortSpec("web", "tcp", 8080, 80, "ingress")
WEB_UDP = PortSpec("web", "udp", 5353, 53, "ingress")
WEB_EXTRA = PortSpec("web", "tcp", 9090, 80, "ingress")
IDLE = PortSpec("idle", "tcp", 7070, 80, "ingress")
HOSTED = PortSpec("hosted", "tcp", 8081, 80, "host")

CLIENT_CODE = r"""
import json, socket, sys, time
mode, host, port, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
sport = int(sys.argv[5]) if len(sys.argv) > 5 else 0
out = []
for _ in range(n):
    t0 = time.monotonic()
    try:
        if mode == "tcp":
            s = socket.create_connection((host, port), timeout=3)
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
            body = data.split(b"\r\n\r\n", 1)[1]
        else:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.settimeout(3)
            s.bind(("0.0.0.0", sport))
            s.connect((host, port))
            s.send(b"who?")
            body = s.recv(65536)
        s.close()
        info = {k: v.strip() for k, _, v in (l.partition(":") for l in body.decode().splitlines())}
        out.append({"task": info["task"], "client": info["client"]})
    except OSError as e:
        out.append({"error": type(e).__name__, "seconds": time.monotonic() - t0})
print(json.dumps(out))
"""


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, check=check, capture_output=True, text=True, timeout=30)


def read_line(proc: subprocess.Popen[str], timeout: float = 10.0) -> str:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, f"no output from {proc.args} within {timeout}s"
    return proc.stdout.readline()


class Lab:
    def __init__(self) -> None:
        self.namespaces: list[str] = []
        self.procs: list[subprocess.Popen[str]] = []
        self.driver: subprocess.Popen[str] | None = None

    # ------------------------------------------------------------------ building and cleanup
    def netns(self, name: str) -> None:
        run("ip", "netns", "add", name)
        self.namespaces.append(name)
        run("ip", "-n", name, "link", "set", "lo", "up")

    def build(self) -> None:
        for name in (HOST, CLIENT, *(ns for ns, _ in TASKS.values())):
            self.netns(name)
        h = ("ip", "-n", HOST)
        run(*h, "link", "add", "br0", "type", "bridge")
        run(*h, "addr", "add", "198.19.1.1/24", "dev", "br0")
        run(*h, "link", "set", "br0", "up")
        run(*h, "link", "add", "vc", "type", "veth", "peer", "name", "eth0", "netns", CLIENT)
        run(*h, "addr", "add", f"{NODE_ADDR}/24", "dev", "vc")
        run(*h, "link", "set", "vc", "up")
        run("ip", "-n", CLIENT, "addr", "add", "198.18.0.2/24", "dev", "eth0")
        run("ip", "-n", CLIENT, "link", "set", "eth0", "up")
        for i, (ns, addr) in enumerate(TASKS.values(), start=1):
            run(*h, "link", "add", f"vt{i}", "type", "veth", "peer", "name", "eth0", "netns", ns)
            run(*h, "link", "set", f"vt{i}", "master", "br0", "up")
            # a task reaching itself through the mesh: with br_netfilter loaded, the DNAT'd
            # frame is bridged back out of the port it came in on (docs/design/mesh.md)
            run(*h, "link", "set", f"vt{i}", "type", "bridge_slave", "hairpin", "on")
            run("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", "eth0")
            run("ip", "-n", ns, "link", "set", "eth0", "up")
            run("ip", "-n", ns, "route", "add", "default", "via", "198.19.1.1")
        # inside the host namespace only (what the runtime does on a real node)
        run(
            "ip",
            "netns",
            "exec",
            HOST,
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
            "net.ipv4.conf.all.route_localnet=1",
        )

    def start_tasks(self) -> None:
        for name, (ns, _) in TASKS.items():
            env = [
                f"SHOAL_TASK_NAME={name}",
                f"SHOAL_TASK_ID=id-{name}",
                f"SHOAL_TASK_SLOT={name[-1]}",
                "SHOAL_SERVICE_NAME=web",
            ]
            proc = subprocess.Popen(
                [
                    "ip",
                    "netns",
                    "exec",
                    ns,
                    "env",
                    *env,
                    sys.executable,
                    "-m",
                    "shoal.workloads.whoami",
                    "--port",
                    "80",
                    "--udp-port",
                    "53",
                ],
                cwd=REPO,
                stdout=subprocess.PIPE,
                text=True,
            )
            self.procs.append(proc)
            assert "listening" in read_line(proc)

    def start_driver(self) -> None:
        self.driver = subprocess.Popen(
            ["ip", "netns", "exec", HOST, sys.executable, "-m", "shoal.mesh.driver"],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.procs.append(self.driver)

    def cleanup(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()  # by PID: `ip netns exec` and `env` exec into the program
            proc.wait(timeout=10)
        for name in reversed(self.namespaces):
            run("ip", "netns", "del", name, check=False)

    # -------------------------------------------------------------------------------- using
    def request(self, op: str, **kw: Any) -> dict[str, Any]:
        assert self.driver is not None and self.driver.stdin is not None
        self.driver.stdin.write(json.dumps({"op": op, **kw}) + "\n")
        self.driver.stdin.flush()
        reply: dict[str, Any] = json.loads(read_line(self.driver))
        return reply

    def apply(self, state: MeshState) -> dict[str, Any]:
        reply = self.request("apply", state=state.to_dict())
        assert reply["ok"], reply
        return reply

    def clients(
        self, ns: str, mode: str, host: str, port: int, n: int, sport: int = 0
    ) -> list[dict[str, Any]]:
        out = run(
            "ip",
            "netns",
            "exec",
            ns,
            sys.executable,
            "-c",
            CLIENT_CODE,
            mode,
            host,
            str(port),
            str(n),
            str(sport),
        )
        result: list[dict[str, Any]] = json.loads(out.stdout)
        return result

    def tasks_hit(self, ns: str, mode: str, host: str, port: int, n: int = 30) -> Counter[str]:
        results = self.clients(ns, mode, host, port, n)
        errors = [r for r in results if "error" in r]
        assert not errors, errors
        return Counter(r["task"] for r in results)

    def nft(self, *args: str) -> str:
        return run("ip", "netns", "exec", HOST, "nft", *args, check=False).stdout

    def traffic(self) -> dict[tuple[str, int], PortTraffic]:
        return parse_counters(self.nft("-j", "list", "table", "inet", "shoal"))


def ep(task: str, ready: bool = True, node: str = "n1", address: str | None = None) -> Endpoint:
    return Endpoint("web", f"id-{task}", node, address or TASKS[task][1], ready)


def state(ports: list[PortSpec], endpoints: list[Endpoint]) -> MeshState:
    return MeshState("n1", SUBNET, tuple(ports), tuple(endpoints))


ALL = [ep("web.1"), ep("web.2"), ep("web.3")]


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces)")
    root_forward = Path("/proc/sys/net/ipv4/ip_forward").read_text()
    lab = Lab()
    try:
        lab.build()
        lab.start_tasks()
        lab.start_driver()
        yield lab
    finally:
        lab.cleanup()
        assert Path("/proc/sys/net/ipv4/ip_forward").read_text() == root_forward


def test_round_robin_tcp_and_udp_from_an_external_client(lab: Lab) -> None:
    lab.apply(state([WEB, WEB_UDP], ALL))
    assert lab.tasks_hit(CLIENT, "tcp", NODE_ADDR, 8080) == {"web.1": 10, "web.2": 10, "web.3": 10}
    assert lab.tasks_hit(CLIENT, "udp", NODE_ADDR, 5353) == {"web.1": 10, "web.2": 10, "web.3": 10}
    # an external client keeps its own address (no SNAT to a local task)
    (one,) = lab.clients(CLIENT, "tcp", NODE_ADDR, 8080, 1)
    assert one["client"].startswith("198.18.0.2:")


def test_publish_add_and_rm_on_the_live_service(lab: Lab) -> None:
    lab.apply(state([WEB], ALL))
    pids = [p.pid for p in lab.procs if p.poll() is None]
    lab.apply(state([WEB, WEB_EXTRA], ALL))
    assert sum(lab.tasks_hit(CLIENT, "tcp", NODE_ADDR, 9090).values()) == 30
    assert sum(lab.tasks_hit(CLIENT, "tcp", NODE_ADDR, 8080, 3).values()) == 3
    lab.apply(state([WEB_EXTRA], ALL))
    (gone,) = lab.clients(CLIENT, "tcp", NODE_ADDR, 8080, 1)
    assert gone.get("error") == "ConnectionRefusedError"
    assert sum(lab.tasks_hit(CLIENT, "tcp", NODE_ADDR, 9090, 3).values()) == 3
    assert [p.pid for p in lab.procs if p.poll() is None] == pids  # no task restarted


def test_removed_endpoint_gets_no_new_connection_or_datagram(lab: Lab) -> None:
    lab.apply(state([WEB, WEB_UDP], ALL))
    # a UDP flow from a fixed source port sticks to one task...
    (first,) = lab.clients(CLIENT, "udp", NODE_ADDR, 5353, 1, sport=40000)
    victim = first["task"]
    rest = [e for e in ALL if e.task_id != f"id-{victim}"]
    lab.apply(state([WEB, WEB_UDP], [*rest, ep(victim, ready=False)]))
    hits = lab.tasks_hit(CLIENT, "tcp", NODE_ADDR, 8080)
    assert victim not in hits and sorted(hits.values()) == [15, 15]
    # ...until its task leaves: its conntrack entry is flushed, the flow is balanced anew
    (again,) = lab.clients(CLIENT, "udp", NODE_ADDR, 5353, 1, sport=40000)
    assert "error" not in again and again["task"] != victim
    assert victim not in lab.tasks_hit(CLIENT, "udp", NODE_ADDR, 5353)


def test_host_mode_only_where_a_local_task_is_ready(lab: Lab) -> None:
    remote = ep("web.9", node="n2", address="198.19.2.10")
    hosted = [
        Endpoint("hosted", e.task_id, e.node_id, e.address, e.ready) for e in (ep("web.1"), remote)
    ]
    lab.apply(state([WEB, HOSTED], [*ALL, *hosted]))
    assert lab.tasks_hit(CLIENT, "tcp", NODE_ADDR, 8081) == {"web.1": 30}
    unready = [Endpoint("hosted", e.task_id, e.node_id, e.address, False) for e in hosted[:1]]
    lab.apply(state([WEB, HOSTED], [*ALL, *unready, hosted[1]]))
    assert "8081" not in lab.nft("list", "table", "inet", "shoal")
    (closed,) = lab.clients(CLIENT, "tcp", NODE_ADDR, 8081, 1)
    assert closed.get("error") == "ConnectionRefusedError"


def test_port_without_endpoints_refuses_quickly(lab: Lab) -> None:
    udp_idle = PortSpec("idle", "udp", 7070, 53, "ingress")
    lab.apply(
        state([WEB, IDLE, udp_idle], [*ALL, Endpoint("idle", "i1", "n1", "198.19.1.11", False)])
    )
    for mode in ("tcp", "udp"):
        for ns, addr in ((CLIENT, NODE_ADDR), (HOST, "127.0.0.1")):
            (refused,) = lab.clients(ns, mode, addr, 7070, 1)
            assert refused.get("error") == "ConnectionRefusedError", (mode, ns, refused)
            assert refused["seconds"] < 1.0


def test_requests_from_the_node_itself(lab: Lab) -> None:
    lab.apply(state([WEB, WEB_UDP], ALL))
    for addr in (NODE_ADDR, "127.0.0.1", "198.19.1.1"):
        hits = lab.tasks_hit(HOST, "tcp", addr, 8080)
        assert hits == {"web.1": 10, "web.2": 10, "web.3": 10}, addr
    assert sum(lab.tasks_hit(HOST, "udp", "127.0.0.1", 5353).values()) == 30
    # loopback clients are masqueraded to the bridge address (tasks cannot answer 127.0.0.1)
    (one,) = lab.clients(HOST, "tcp", "127.0.0.1", 8080, 1)
    assert one["client"].startswith("198.19.1.1:")


def test_hairpin_from_a_task(lab: Lab) -> None:
    lab.apply(state([WEB, WEB_UDP], ALL))
    t1 = TASKS["web.1"][0]
    for addr in ("198.19.1.1", NODE_ADDR):
        assert lab.tasks_hit(t1, "tcp", addr, 8080) == {"web.1": 10, "web.2": 10, "web.3": 10}
    assert sum(lab.tasks_hit(t1, "udp", "198.19.1.1", 5353).values()) == 30
    (one,) = lab.clients(t1, "tcp", NODE_ADDR, 8080, 1)
    assert one["client"].startswith("198.19.1.1:")


def test_traffic_counters_count_each_kind_of_client(lab: Lab) -> None:
    """Connections and bytes per published port, as `KernelDataPlane.traffic()` reads them:
    an external client (forward hook), the node itself (output + input), a task hairpinning
    (forward); UDP flows too. Another port's counters do not move."""
    lab.apply(state([WEB, WEB_UDP, WEB_EXTRA], ALL))
    t1 = TASKS["web.1"][0]
    for ns, addr in ((CLIENT, NODE_ADDR), (HOST, "127.0.0.1"), (t1, "198.19.1.1")):
        before = lab.traffic()
        assert sum(lab.tasks_hit(ns, "tcp", addr, 8080, n=6).values()) == 6
        assert sum(lab.tasks_hit(ns, "udp", addr, 5353, n=4).values()) == 4
        after = lab.traffic()
        tcp, udp = ("tcp", 8080), ("udp", 5353)
        assert after[tcp].connections - before[tcp].connections == 6, ns
        assert after[udp].connections - before[udp].connections == 4, ns
        # each HTTP exchange: a request and an answer of well over 100 bytes, plus TCP's own
        assert after[tcp].bytes - before[tcp].bytes > 6 * 300, ns
        assert after[udp].bytes - before[udp].bytes > 4 * (28 + 4 + 20), ns
        assert after[("tcp", 9090)] == before[("tcp", 9090)] == PortTraffic(), ns


def normalized_table(lab: Lab) -> list[str]:
    """`nft -j list table`, without handles and counters, with element lists sorted."""
    items = json.loads(lab.nft("-j", "list", "table", "inet", "shoal"))["nftables"]
    out = []
    for item in items:
        for obj in item.values():
            if isinstance(obj, dict):
                obj.pop("handle", None)
                if isinstance(obj.get("elem"), list):
                    for elem in obj["elem"]:
                        if isinstance(elem, dict) and isinstance(elem.get("elem"), dict):
                            elem["elem"].pop("counter", None)  # traffic so far: not state
                    obj["elem"] = sorted(obj["elem"], key=json.dumps)
        out.append(json.dumps(item, sort_keys=True))
    return sorted(out)


def test_incremental_updates_equal_a_fresh_apply_and_close_leaves_nothing(lab: Lab) -> None:
    final = state([WEB_UDP, WEB_EXTRA, IDLE, HOSTED], [ep("web.2"), ep("web.3")])
    for s in (
        state([WEB, WEB_UDP], ALL),
        state([WEB, WEB_UDP, IDLE], [ep("web.1"), ep("web.2")]),
        state([WEB_EXTRA, IDLE], [ep("web.3")]),
        final,
    ):
        lab.apply(s)
    incremental = normalized_table(lab)
    assert lab.request("close")["ok"]
    assert "shoal" not in lab.nft("list", "tables")
    lab.apply(final)
    assert normalized_table(lab) == incremental
    assert lab.request("close")["ok"]
    assert "shoal" not in lab.nft("list", "tables")

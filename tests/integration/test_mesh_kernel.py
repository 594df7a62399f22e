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
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shoal.mesh.model import Endpoint, MeshState, PortSpec
from shoal.mesh.traffic import PortTraffic, parse_counters
from tests.integration.labtools import NetnsLab, read_line, run

pytestmark = pytest.mark.lab

PREFIX = f"shoal-md-{os.getpid()}"
HOST, CLIENT = f"{PREFIX}-h", f"{PREFIX}-c"
TASKS = {f"web.{i}": (f"{PREFIX}-t{i}", f"198.19.1.1{i}") for i in (1, 2, 3)}
NODE_ADDR = "198.18.0.11"
SUBNET = "198.19.1.0/24"
DRIVER = "mesh"

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


def build(lab: NetnsLab) -> None:
    for name in (HOST, CLIENT, *(ns for ns, _ in TASKS.values())):
        lab.netns(name)
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
    run("sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv4.conf.all.route_localnet=1", ns=HOST)


def start_tasks(lab: NetnsLab) -> None:
    for name, (ns, _) in TASKS.items():
        env = [
            f"SHOAL_TASK_NAME={name}",
            f"SHOAL_TASK_ID=id-{name}",
            f"SHOAL_TASK_SLOT={name[-1]}",
            "SHOAL_SERVICE_NAME=web",
        ]
        proc = lab.spawn(ns, "env", *env, sys.executable, "-m", "shoal.workloads.whoami",
                         "--port", "80", "--udp-port", "53")
        assert "listening" in read_line(proc)


def start_driver(lab: NetnsLab) -> None:
    lab.start_driver(DRIVER, HOST, "-m", "shoal.mesh.driver")


def apply(lab: NetnsLab, state: MeshState) -> dict[str, Any]:
    reply = lab.request(DRIVER, "apply", state=state.to_dict())
    assert reply["ok"], reply
    return reply


def clients(
    ns: str, mode: str, host: str, port: int, n: int, sport: int = 0
) -> list[dict[str, Any]]:
    out = run(sys.executable, "-c", CLIENT_CODE, mode, host, str(port), str(n), str(sport),
              ns=ns)
    result: list[dict[str, Any]] = json.loads(out.stdout)
    return result


def hits_in_order(ns: str, mode: str, host: str, port: int, n: int = 30) -> list[str]:
    results = clients(ns, mode, host, port, n)
    errors = [r for r in results if "error" in r]
    assert not errors, errors
    return [r["task"] for r in results]


def tasks_hit(ns: str, mode: str, host: str, port: int, n: int = 30) -> Counter[str]:
    return Counter(hits_in_order(ns, mode, host, port, n))


def assert_round_robin(ns: str, mode: str, host: str, port: int) -> None:
    """30 new connections go to web.1..3 in turn: no two in a row reach the same task and
    each gets about 10. A SYN lost before conntrack confirmed its flow comes back as a new
    flow and takes the next slot, which shifts the turn by one (11/10/9) but never sends
    two in a row to one task; a random pick would (about 10 of 29 pairs)."""
    order = hits_in_order(ns, mode, host, port)
    repeats = [i for i in range(1, len(order)) if order[i] == order[i - 1]]
    counts = Counter(order)
    assert not repeats and set(counts) == {"web.1", "web.2", "web.3"}, (host, order)
    assert all(9 <= c <= 11 for c in counts.values()), (host, counts)


def nft(*args: str) -> str:
    return run("nft", *args, check=False, ns=HOST).stdout


def traffic() -> dict[tuple[str, int], PortTraffic]:
    """The mesh's per-port counters, as `KernelDataPlane.traffic()` reads them."""
    return parse_counters(nft("-j", "list", "table", "inet", "shoal"))


def ep(task: str, ready: bool = True, node: str = "n1", address: str | None = None) -> Endpoint:
    return Endpoint("web", f"id-{task}", node, address or TASKS[task][1], ready)


def state(ports: list[PortSpec], endpoints: list[Endpoint]) -> MeshState:
    return MeshState("n1", SUBNET, tuple(ports), tuple(endpoints))


ALL = [ep("web.1"), ep("web.2"), ep("web.3")]


@pytest.fixture(scope="module")
def lab() -> Iterator[NetnsLab]:
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces)")
    root_forward = Path("/proc/sys/net/ipv4/ip_forward").read_text()
    lab = NetnsLab()
    try:
        build(lab)
        start_tasks(lab)
        start_driver(lab)
        yield lab
    finally:
        lab.cleanup()
        assert Path("/proc/sys/net/ipv4/ip_forward").read_text() == root_forward


def test_round_robin_tcp_and_udp_from_an_external_client(lab: NetnsLab) -> None:
    apply(lab, state([WEB, WEB_UDP], ALL))
    assert_round_robin(CLIENT, "tcp", NODE_ADDR, 8080)
    assert_round_robin(CLIENT, "udp", NODE_ADDR, 5353)
    # an external client keeps its own address (no SNAT to a local task)
    (one,) = clients(CLIENT, "tcp", NODE_ADDR, 8080, 1)
    assert one["client"].startswith("198.18.0.2:")


def test_publish_add_and_rm_on_the_live_service(lab: NetnsLab) -> None:
    apply(lab, state([WEB], ALL))
    pids = [p.pid for p in lab.procs if p.poll() is None]
    apply(lab, state([WEB, WEB_EXTRA], ALL))
    assert sum(tasks_hit(CLIENT, "tcp", NODE_ADDR, 9090).values()) == 30
    assert sum(tasks_hit(CLIENT, "tcp", NODE_ADDR, 8080, 3).values()) == 3
    apply(lab, state([WEB_EXTRA], ALL))
    (gone,) = clients(CLIENT, "tcp", NODE_ADDR, 8080, 1)
    assert gone.get("error") == "ConnectionRefusedError"
    assert sum(tasks_hit(CLIENT, "tcp", NODE_ADDR, 9090, 3).values()) == 3
    assert [p.pid for p in lab.procs if p.poll() is None] == pids  # no task restarted


def test_removed_endpoint_gets_no_new_connection_or_datagram(lab: NetnsLab) -> None:
    apply(lab, state([WEB, WEB_UDP], ALL))
    # a UDP flow from a fixed source port sticks to one task...
    (first,) = clients(CLIENT, "udp", NODE_ADDR, 5353, 1, sport=40000)
    victim = first["task"]
    rest = [e for e in ALL if e.task_id != f"id-{victim}"]
    apply(lab, state([WEB, WEB_UDP], [*rest, ep(victim, ready=False)]))
    hits = tasks_hit(CLIENT, "tcp", NODE_ADDR, 8080)
    assert victim not in hits and sorted(hits.values()) == [15, 15]
    # ...until its task leaves: its conntrack entry is flushed, the flow is balanced anew
    (again,) = clients(CLIENT, "udp", NODE_ADDR, 5353, 1, sport=40000)
    assert "error" not in again and again["task"] != victim
    assert victim not in tasks_hit(CLIENT, "udp", NODE_ADDR, 5353)


def test_host_mode_only_where_a_local_task_is_ready(lab: NetnsLab) -> None:
    remote = ep("web.9", node="n2", address="198.19.2.10")
    hosted = [
        Endpoint("hosted", e.task_id, e.node_id, e.address, e.ready) for e in (ep("web.1"), remote)
    ]
    apply(lab, state([WEB, HOSTED], [*ALL, *hosted]))
    assert tasks_hit(CLIENT, "tcp", NODE_ADDR, 8081) == {"web.1": 30}
    unready = [Endpoint("hosted", e.task_id, e.node_id, e.address, False) for e in hosted[:1]]
    apply(lab, state([WEB, HOSTED], [*ALL, *unready, hosted[1]]))
    assert "8081" not in nft("list", "table", "inet", "shoal")
    (closed,) = clients(CLIENT, "tcp", NODE_ADDR, 8081, 1)
    assert closed.get("error") == "ConnectionRefusedError"


def test_port_without_endpoints_refuses_quickly(lab: NetnsLab) -> None:
    udp_idle = PortSpec("idle", "udp", 7070, 53, "ingress")
    apply(lab, state([WEB, IDLE, udp_idle], ALL))  # "idle": no task at all
    for mode in ("tcp", "udp"):
        for ns, addr in ((CLIENT, NODE_ADDR), (HOST, "127.0.0.1")):
            (refused,) = clients(ns, mode, addr, 7070, 1)
            assert refused.get("error") == "ConnectionRefusedError", (mode, ns, refused)
            assert refused["seconds"] < 1.0


def test_requests_from_the_node_itself(lab: NetnsLab) -> None:
    apply(lab, state([WEB, WEB_UDP], ALL))
    for addr in (NODE_ADDR, "127.0.0.1", "198.19.1.1"):
        assert_round_robin(HOST, "tcp", addr, 8080)
    assert sum(tasks_hit(HOST, "udp", "127.0.0.1", 5353).values()) == 30
    # loopback clients are masqueraded to the bridge address (tasks cannot answer 127.0.0.1)
    (one,) = clients(HOST, "tcp", "127.0.0.1", 8080, 1)
    assert one["client"].startswith("198.19.1.1:")


def test_hairpin_from_a_task(lab: NetnsLab) -> None:
    apply(lab, state([WEB, WEB_UDP], ALL))
    t1 = TASKS["web.1"][0]
    for addr in ("198.19.1.1", NODE_ADDR):
        assert_round_robin(t1, "tcp", addr, 8080)
    assert sum(tasks_hit(t1, "udp", "198.19.1.1", 5353).values()) == 30
    (one,) = clients(t1, "tcp", NODE_ADDR, 8080, 1)
    assert one["client"].startswith("198.19.1.1:")


def test_traffic_counters_count_each_kind_of_client(lab: NetnsLab) -> None:
    """Connections and bytes per published port, as `KernelDataPlane.traffic()` reads them:
    an external client (forward hook), the node itself (output + input), a task hairpinning
    (forward); UDP flows too. Another port's counters do not move."""
    apply(lab, state([WEB, WEB_UDP, WEB_EXTRA], ALL))
    t1 = TASKS["web.1"][0]
    for ns, addr in ((CLIENT, NODE_ADDR), (HOST, "127.0.0.1"), (t1, "198.19.1.1")):
        before = traffic()
        assert sum(tasks_hit(ns, "tcp", addr, 8080, n=6).values()) == 6
        assert sum(tasks_hit(ns, "udp", addr, 5353, n=4).values()) == 4
        after = traffic()
        tcp, udp = ("tcp", 8080), ("udp", 5353)
        assert after[tcp].connections - before[tcp].connections == 6, ns
        assert after[udp].connections - before[udp].connections == 4, ns
        # each HTTP exchange: a request and an answer of well over 100 bytes, plus TCP's own
        assert after[tcp].bytes - before[tcp].bytes > 6 * 300, ns
        assert after[udp].bytes - before[udp].bytes > 4 * (28 + 4 + 20), ns
        assert after[("tcp", 9090)] == before[("tcp", 9090)] == PortTraffic(), ns


def normalized_table(lab: NetnsLab) -> list[str]:
    """`nft -j list table`, without handles and counters, with element lists sorted."""
    items = json.loads(nft("-j", "list", "table", "inet", "shoal"))["nftables"]
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


def test_incremental_updates_equal_a_fresh_apply_and_close_leaves_nothing(lab: NetnsLab) -> None:
    final = state([WEB_UDP, WEB_EXTRA, IDLE, HOSTED], [ep("web.2"), ep("web.3")])
    for s in (
        state([WEB, WEB_UDP], ALL),
        state([WEB, WEB_UDP, IDLE], [ep("web.1"), ep("web.2")]),
        state([WEB_EXTRA, IDLE], [ep("web.3")]),
        final,
    ):
        apply(lab, s)
    incremental = normalized_table(lab)
    assert lab.request(DRIVER, "close")["ok"]
    assert "shoal" not in nft("list", "tables")
    apply(lab, final)
    assert normalized_table(lab) == incremental
    assert lab.request(DRIVER, "close")["ok"]
    assert "shoal" not in nft("list", "tables")

"""The VXLAN overlay on real kernels, in namespaces of its own (`shoal-ov<pid>-*`).

    fabric (bridge fab0) ── h1 198.18.0.11 ── h2 198.18.0.12 ── h3 198.18.0.13
    hK: bridge shoal0 198.19.K.1/24, task namespace tK 198.19.K.2 on it, ip_forward=1

Each host namespace runs `Overlay` through `python -m shoal.mesh.overlay.driver`; each task
runs `python -m shoal.workloads.whoami`. Counters of an nftables `bridge` table in the
fabric namespace tell what crossed the wire. Nothing is sent outside these namespaces and
nothing in the root namespace is changed.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shoal.mesh.model import Endpoint, MeshState, PortSpec
from tests.integration.labtools import NetnsLab, read_line, run

pytestmark = pytest.mark.lab

PREFIX = f"shoal-ov{os.getpid()}"
FABRIC = f"{PREFIX}-fab"
HOSTS = (1, 2, 3)
DEVICE = "shoal.4096"


def host_ns(k: int) -> str:
    return f"{PREFIX}-h{k}"


def task_ns(k: int) -> str:
    return f"{PREFIX}-t{k}"


def underlay(k: int) -> str:
    return f"198.18.0.{10 + k}"


def subnet(k: int) -> str:
    return f"198.19.{k}.0/24"


def task_addr(k: int) -> str:
    return f"198.19.{k}.2"


def peer(k: int, host: str | None = None) -> dict[str, str]:
    return {"node_id": f"n{k}", "underlay": host or underlay(k), "subnet": subnet(k)}


GET_CODE = r"""
import json, socket, sys
out = []
for target in sys.argv[1:]:
    host, _, port = target.partition(":")
    try:
        s = socket.create_connection((host, int(port or 80)), timeout=2)
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
        s.close()
        body = data.split(b"\r\n\r\n", 1)[1].decode()
        info = {k: v.strip() for k, _, v in (l.partition(":") for l in body.splitlines())}
        out.append({"task": info["task"], "client": info["client"]})
    except OSError as e:
        out.append({"error": type(e).__name__})
print(json.dumps(out))
"""

# connects again and again until stdin closes, then prints how many succeeded and failed
LOAD_CODE = r"""
import json, select, socket, sys, time
host, ok, failed = sys.argv[1], 0, []
print("started", flush=True)
while not select.select([sys.stdin], [], [], 0)[0]:
    t0 = time.monotonic()
    try:
        s = socket.create_connection((host, 80), timeout=2)
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        while s.recv(65536):
            pass
        s.close()
        ok += 1
    except OSError as e:
        failed.append([type(e).__name__, round(time.monotonic() - t0, 3)])
print(json.dumps({"ok": ok, "failed": failed}), flush=True)
"""

COUNTERS = """
table bridge ovtest {
    chain counting {
        type filter hook forward priority 0; policy accept;
        ip saddr 198.18.0.0/24 ip daddr 198.18.0.0/24 udp dport 4789 counter comment "vxlan4789"
        ip saddr 198.18.0.0/24 ip daddr 198.18.0.0/24 udp dport 7789 counter comment "vxlan7789"
        ip daddr 198.19.0.0/16 counter comment "bare"
        ip saddr 198.19.0.0/16 counter comment "bare"
    }
}
"""


def build(lab: NetnsLab) -> None:
    lab.netns(FABRIC)
    run("ip", "-n", FABRIC, "link", "add", "fab0", "type", "bridge")
    run("ip", "-n", FABRIC, "link", "set", "fab0", "up")
    for k in HOSTS:
        h, t = host_ns(k), task_ns(k)
        lab.netns(h)
        lab.netns(t)
        run("ip", "-n", FABRIC, "link", "add", f"vh{k}", "type", "veth",
            "peer", "name", "eth0", "netns", h)
        run("ip", "-n", FABRIC, "link", "set", f"vh{k}", "master", "fab0", "up")
        run("ip", "-n", h, "addr", "add", f"{underlay(k)}/24", "dev", "eth0")
        run("ip", "-n", h, "link", "set", "eth0", "up")
        run("ip", "-n", h, "link", "add", "shoal0", "type", "bridge")
        run("ip", "-n", h, "addr", "add", f"198.19.{k}.1/24", "dev", "shoal0")
        run("ip", "-n", h, "link", "set", "shoal0", "up")
        run("ip", "-n", h, "link", "add", "vt1", "type", "veth", "peer", "name", "eth0",
            "netns", t)
        run("ip", "-n", h, "link", "set", "vt1", "master", "shoal0", "up")
        run("ip", "-n", t, "addr", "add", f"{task_addr(k)}/24", "dev", "eth0")
        run("ip", "-n", t, "link", "set", "eth0", "up")
        run("ip", "-n", t, "route", "add", "default", "via", f"198.19.{k}.1")
        run("sysctl", "-qw", "net.ipv4.ip_forward=1", ns=h)  # inside hK only
    nft = subprocess.run(["ip", "netns", "exec", FABRIC, "nft", "-f", "-"], input=COUNTERS,
                         capture_output=True, text=True, timeout=30)
    assert nft.returncode == 0, nft.stderr


def start_tasks(lab: NetnsLab) -> None:
    for k in HOSTS:
        proc = lab.spawn(task_ns(k), "env", f"SHOAL_TASK_NAME=task{k}", sys.executable, "-m",
                         "shoal.workloads.whoami", "--port", "80")
        assert "listening" in read_line(proc)


def start_driver(lab: NetnsLab, k: int, port: int = 4789) -> None:
    lab.start_driver(k, host_ns(k), "-m", "shoal.mesh.overlay.driver", "--underlay",
                     underlay(k), "--subnet", subnet(k), "--port", str(port))


def request(lab: NetnsLab, k: int, op: str, **kw: Any) -> dict[str, Any]:
    reply = lab.request(k, op, **kw)
    assert reply["ok"], reply
    return reply


def apply(lab: NetnsLab, k: int, peers: list[dict[str, str]]) -> dict[str, Any]:
    return request(lab, k, "apply", peers=peers)


def full_mesh(lab: NetnsLab, port: int = 4789) -> None:
    for k in HOSTS:
        if k not in lab.drivers:
            start_driver(lab, k, port)
        apply(lab, k, [peer(j) for j in HOSTS])  # its own entry included: skipped


def get(k: int, *targets: str, ns: str | None = None) -> list[dict[str, Any]]:
    """GETs from task k (or namespace `ns`) to each "address[:port]" (port 80)."""
    out = run(sys.executable, "-c", GET_CODE, *targets, ns=ns or task_ns(k))
    result: list[dict[str, Any]] = json.loads(out.stdout)
    return result


def counter(name: str) -> int:
    """Packets counted by the fabric's rules commented `name`."""
    out = run("nft", "-j", "list", "chain", "bridge", "ovtest", "counting", ns=FABRIC).stdout
    rules = [i["rule"] for i in json.loads(out)["nftables"] if "rule" in i]
    counts = [
        int(e["counter"]["packets"])
        for r in rules if r.get("comment") == name
        for e in r["expr"] if "counter" in e
    ]
    assert counts, f"no counter {name}"
    return sum(counts)


def entries(k: int) -> dict[str, list[str]]:
    """What hK's overlay device holds, as `ip`/`bridge` show it (an outside view)."""
    ns = host_ns(k)
    routes = json.loads(run("ip", "-j", "route", "show", "dev", DEVICE, ns=ns).stdout)
    neigh = json.loads(run("ip", "-j", "neigh", "show", "dev", DEVICE, ns=ns).stdout)
    fdb = json.loads(run("bridge", "-j", "fdb", "show", "dev", DEVICE, ns=ns).stdout)
    return {
        "routes": sorted(f"{r['dst']} via {r['gateway']}" for r in routes),
        "neigh": sorted(f"{n['dst']} {n['lladdr']} {','.join(n['state'])}" for n in neigh),
        "fdb": sorted(f"{f['mac']} {f['dst']}" for f in fdb if "dst" in f),
    }


def links(k: int) -> set[str]:
    return set(re.findall(r"^\d+: ([^:@]+)", run("ip", "-o", "link", ns=host_ns(k)).stdout,
                          re.M))


@pytest.fixture(scope="module")
def lab() -> Iterator[NetnsLab]:
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces)")
    root_forward = Path("/proc/sys/net/ipv4/ip_forward").read_text()
    lab = NetnsLab()
    try:
        build(lab)
        start_tasks(lab)
        yield lab
    finally:
        lab.cleanup()
        assert Path("/proc/sys/net/ipv4/ip_forward").read_text() == root_forward


def expected_entries(*ks: int) -> dict[str, list[str]]:
    return {
        "routes": [f"198.19.{k}.0/24 via 198.19.{k}.0" for k in ks],
        "neigh": [f"198.19.{k}.0 0a:58:c6:13:0{k}:00 PERMANENT" for k in ks],
        "fdb": [f"0a:58:c6:13:0{k}:00 {underlay(k)}" for k in ks],
    }


def test_tasks_reach_tasks_on_other_nodes_over_vxlan(lab: NetnsLab) -> None:
    full_mesh(lab)
    bare, vxlan = counter("bare"), counter("vxlan4789")
    for k in HOSTS:
        others = [j for j in HOSTS if j != k]
        answers = get(k, *(task_addr(j) for j in others))
        assert [a.get("task") for a in answers] == [f"task{j}" for j in others], answers
        # routed, not NATed: the other task sees the caller's own address
        assert all(a["client"].startswith(task_addr(k) + ":") for a in answers)
    assert counter("vxlan4789") > vxlan  # UDP 4789 between underlay addresses...
    assert counter("bare") == bare  # ...and no task address ever on the wire itself
    stats = json.loads(run("ip", "-j", "-s", "link", "show", DEVICE, ns=host_ns(1)).stdout)
    assert stats[0]["stats64"]["tx"]["packets"] > 0 and stats[0]["mtu"] == 1450
    assert entries(1) == expected_entries(2, 3)


def test_removing_a_peer_removes_only_its_entries_without_disturbing_others(lab: NetnsLab) -> None:
    full_mesh(lab)
    load = lab.spawn(task_ns(1), sys.executable, "-c", LOAD_CODE, task_addr(2), stdin=True)
    assert read_line(load).strip() == "started"
    try:
        for i in range(8):
            reply = apply(lab, 1, [peer(1), peer(2)])
            assert len(reply["ops"]) == 3 and all("198.19.2" not in op and "13:02" not in op
                                                  for op in reply["ops"])
            assert entries(1) == expected_entries(2)
            if i == 0:  # (only once: the kernel rate-limits its ICMP unreachables)
                assert "error" in get(1, task_addr(3))[0]
            apply(lab, 1, [peer(1), peer(2), peer(3, host="198.18.0.99")])  # h3 moved away...
            apply(lab, 1, [peer(1), peer(2), peer(3)])  # ...and back: one fdb replace each
            assert [a.get("task") for a in get(1, task_addr(3))] == ["task3"]
    finally:
        assert load.stdin is not None
        load.stdin.close()
        summary = json.loads(read_line(load, timeout=15))
        load.wait(timeout=10)
    assert summary["failed"] == [] and summary["ok"] > 10, summary


def test_reapplying_is_idempotent_and_a_restarted_driver_adopts_the_device(lab: NetnsLab) -> None:
    full_mesh(lab)
    before = entries(1)
    assert apply(lab, 1, [peer(j) for j in HOSTS])["ops"] == []
    start_driver(lab, 1)  # a daemon restart: reads the kernel back, changes nothing
    assert apply(lab, 1, [peer(j) for j in HOSTS])["ops"] == []
    assert entries(1) == before
    assert [a.get("task") for a in get(1, task_addr(2), task_addr(3))] == ["task2", "task3"]


def test_another_data_path_port_works_when_every_node_uses_it(lab: NetnsLab) -> None:
    for k in HOSTS:
        start_driver(lab, k, port=7789)
    full_mesh(lab)
    shown = json.loads(run("ip", "-j", "-d", "link", "show", DEVICE, ns=host_ns(2)).stdout)
    assert shown[0]["linkinfo"]["info_data"]["port"] == 7789
    before4789, before7789 = counter("vxlan4789"), counter("vxlan7789")
    answers = get(2, task_addr(1), task_addr(3))
    assert [a.get("task") for a in answers] == ["task1", "task3"]
    assert counter("vxlan7789") > before7789
    assert counter("vxlan4789") == before4789
    for k in HOSTS:  # back to the default for the tests that follow
        start_driver(lab, k, port=4789)
    full_mesh(lab)
    assert [a.get("task") for a in get(2, task_addr(1))] == ["task1"]


def test_the_kernel_mesh_reaches_a_remote_task_through_the_overlay(lab: NetnsLab) -> None:
    """h3 asks h1's published port; h1's only endpoint is h2's task: DNAT, masquerade to
    h1's overlay address (198.19.1.0), across VXLAN, and the reply back the same way."""
    full_mesh(lab)
    web = PortSpec("web", "tcp", 8080, 80, "ingress")
    remote = Endpoint("web", "id-t2", "n2", task_addr(2), True)
    lab.start_driver("mesh", host_ns(1), "-m", "shoal.mesh.driver")
    try:
        state = MeshState("n1", subnet(1), (web,), (remote,))
        assert lab.request("mesh", "apply", state=state.to_dict())["ok"]
        answers = get(0, *[f"{underlay(1)}:8080"] * 5, ns=host_ns(3))
        assert [a.get("task") for a in answers] == ["task2"] * 5, answers
        assert all(a["client"].startswith("198.19.1.0:") for a in answers)
    finally:
        assert lab.request("mesh", "close")["ok"]
        lab.stop_driver("mesh")


def test_a_hundred_peers(lab: NetnsLab) -> None:
    """Correct at scale; prints the apply times (figures for docs/design/overlay.md)."""
    full_mesh(lab)
    fake = [{"node_id": f"x{i:03d}", "underlay": f"198.18.0.{100 + i}",
             "subnet": f"198.19.{10 + i}.0/24"} for i in range(100)]
    real = [peer(j) for j in HOSTS]
    figures = {}
    for n in (1, 10, 100):
        request(lab, 1, "close")
        figures[f"apply {n} from none"] = apply(lab, 1, real + fake[:n])["ms"]
    moved = dict(fake[50], underlay="198.18.0.250")
    reply = apply(lab, 1, real + fake[:50] + [moved] + fake[51:])
    figures["update 1 of 100"] = reply["ms"]
    assert reply["ops"] == ["fdb replace 0a:58:c6:13:3c:00 dst 198.18.0.250"]
    reply = apply(lab, 1, real + fake[:50] + [moved] + fake[51:99])
    figures["remove 1 of 100"] = reply["ms"]
    assert len(reply["ops"]) == 3
    assert len(entries(1)["routes"]) == 2 + 99
    assert [a.get("task") for a in get(1, task_addr(2), task_addr(3))] == ["task2", "task3"]
    reply = apply(lab, 1, real + fake[:50] + [moved] + fake[51:99])
    figures["re-apply 99 (no change)"] = reply["ms"]
    assert reply["ops"] == []
    apply(lab, 1, real)
    print("\noverlay apply times (ms):", json.dumps(figures))


def test_close_leaves_nothing(lab: NetnsLab) -> None:
    full_mesh(lab)
    for k in HOSTS:
        request(lab, k, "close")
        request(lab, k, "close")  # idempotent
        assert links(k) == {"lo", "eth0", "shoal0", "vt1"}
        routes = json.loads(run("ip", "-j", "route", "show", "table", "all", ns=host_ns(k)).stdout)
        task_routes = {r["dst"] for r in routes if r["dst"].startswith("198.19.")}
        assert task_routes == {f"198.19.{k}.0/24", f"198.19.{k}.1", f"198.19.{k}.255"}
        neigh = json.loads(run("ip", "-j", "neigh", "show", ns=host_ns(k)).stdout)
        assert not [n for n in neigh if n["dst"].endswith(".0")], neigh
    started = time.monotonic()
    assert "error" in get(1, task_addr(2))[0]
    assert time.monotonic() - started < 10

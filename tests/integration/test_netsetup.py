"""A task's network plumbing (`shoal.agent.exec.netsetup`) against the real kernel.

The node side runs as the daemon's does, in a network namespace of its own
(`shoal-nsu-<hex>`, this test's, deleted in the finalizer): this file is also the driver
script that pytest starts there under `ip netns exec` (`python <this file> <scenario>`);
each scenario prints what it observed as JSON and pytest checks it. Task namespaces are
anonymous (a thread's unshare, alive while the driver holds their fd) and go with it.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import json
import os
import secrets
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
BRIDGE = "shnu0"
GATEWAY = ipaddress.IPv4Interface("198.18.251.1/24")


# --------------------------------------------------------------------------------------
# driver side: runs inside the test's node netns
# --------------------------------------------------------------------------------------
def _task_netns() -> int:
    from shoal.agent.exec import nsutil

    made: list[int] = []

    def run() -> None:
        nsutil.unshare(nsutil.CLONE_NEWNET)
        made.append(os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC))

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    return made[0]


def _ip(*argv: str, netns_fd: int | None = None) -> Any:
    """`ip -j ARGV` (in the task netns `netns_fd` if given: a setns thread forks it)."""

    def run() -> Any:
        out = subprocess.run(["ip", "-j", *argv], capture_output=True, text=True, check=True)
        return json.loads(out.stdout or "[]")

    if netns_fd is None:
        return run()
    from shoal.agent.exec.netns_call import in_netns

    return in_netns(netns_fd, run)


def _sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True)


def _links(netns_fd: int | None = None) -> dict[str, dict[str, Any]]:
    return {link["ifname"]: link for link in _ip("-d", "link", "show", netns_fd=netns_fd)}


def _addr(n: int) -> ipaddress.IPv4Interface:
    return ipaddress.IPv4Interface(f"198.18.251.{n}/24")


async def _error(call: Callable[[], Any]) -> list[Any]:
    """[code, message] of the NetlinkError `call()` raised (the callers catch it)."""
    from shoal.agent.exec.netsetup import NetlinkError

    try:
        await call()
    except NetlinkError as exc:
        return [exc.code, str(exc.args[1])]
    raise AssertionError("no NetlinkError")


async def scenario_start(_: dict[str, Any]) -> dict[str, Any]:
    from shoal.agent.exec import netsetup

    await netsetup.ensure_bridge(BRIDGE, GATEWAY)
    # the bridge's cached MAC of an earlier task that had this address
    _sh("ip", "neigh", "replace", "198.18.251.5", "lladdr", "0a:58:de:ad:be:ef", "dev", BRIDGE,
        "nud", "stale")  # fmt: skip
    fd = _task_netns()
    await netsetup.create_veth(BRIDGE, "vnu0", fd)
    await netsetup.configure_task_side(fd, _addr(5), GATEWAY.ip)
    await netsetup.forget_neighbour(BRIDGE, _addr(5).ip)
    neigh = _ip("neigh", "show", "dev", BRIDGE)
    await netsetup.forget_neighbour(BRIDGE, _addr(5).ip)  # none left: fine
    await netsetup.forget_neighbour("shnone", _addr(5).ip)  # no bridge: fine
    seen = {
        "host": _links()["vnu0"],
        "bridge_index": _links()[BRIDGE]["ifindex"],
        "task_links": _links(fd),
        "task_addrs": _ip("-4", "addr", "show", "dev", "eth0", netns_fd=fd),
        "task_routes": _ip("-4", "route", "show", netns_fd=fd),
        "neigh": neigh,
        "deleted": [await netsetup.delete_link("vnu0"), await netsetup.delete_link("vnu0")],
        "links_after": sorted(_links()),
        "task_links_after": sorted(_links(fd)),
    }
    os.close(fd)
    return seen


async def scenario_refusals(_: dict[str, Any]) -> dict[str, Any]:
    from shoal.agent.exec import netsetup

    await netsetup.ensure_bridge(BRIDGE, GATEWAY)
    seen: dict[str, Any] = {}
    task = _task_netns()
    # the host name is taken (by another veth): EEXIST, and the link stays as it was
    _sh("ip", "link", "add", "vnu1", "type", "veth", "peer", "name", "vnu1p")
    before = _links()["vnu1"]
    seen["taken"] = await _error(lambda: netsetup.create_veth(BRIDGE, "vnu1", task))
    seen["taken_same"] = _links()["vnu1"] == before
    seen["taken_task_links"] = sorted(_links(task))
    # eth0 exists in the task netns: EEXIST, no host side left
    crowded = _task_netns()
    _ip("link", "add", "eth0", "type", "veth", "peer", "name", "eth0p", netns_fd=crowded)
    seen["eth0_taken"] = await _error(lambda: netsetup.create_veth(BRIDGE, "vnu2", crowded))
    # no bridge of that name; a "bridge" that cannot take ports (the kernel made the pair,
    # failed to enslave it and unregistered it)
    seen["no_bridge"] = await _error(lambda: netsetup.create_veth("shnone", "vnu3", task))
    _sh("ip", "link", "add", "shdum0", "type", "veth", "peer", "name", "shdum1")
    seen["not_bridge"] = await _error(lambda: netsetup.create_veth("shdum0", "vnu4", task))
    seen["links_after_refusals"] = sorted(_links())
    seen["task_links_after_refusals"] = sorted(_links(task))
    # the bridge made again (a new index): the next veth is a port of the new one
    await netsetup.create_veth(BRIDGE, "vnu5", task)
    seen["old_bridge"] = [_links()[BRIDGE]["ifindex"], _links()["vnu5"]["master"]]
    assert await netsetup.delete_link("vnu5")
    _sh("ip", "link", "del", BRIDGE)
    await netsetup.ensure_bridge(BRIDGE, GATEWAY)
    await netsetup.create_veth(BRIDGE, "vnu5", task)
    seen["new_bridge"] = [_links()[BRIDGE]["ifindex"], _links()["vnu5"]["master"]]
    # the task side twice: the address exists (first failure of the batch), state as once
    await netsetup.configure_task_side(task, _addr(7), GATEWAY.ip)
    seen["again"] = await _error(lambda: netsetup.configure_task_side(task, _addr(7), GATEWAY.ip))
    seen["again_addrs"] = _ip("-4", "addr", "show", "dev", "eth0", netns_fd=task)
    seen["again_routes"] = _ip("-4", "route", "show", "default", netns_fd=task)
    # a task netns without eth0
    bare = _task_netns()
    seen["no_eth0"] = await _error(lambda: netsetup.configure_task_side(bare, _addr(8), GATEWAY.ip))
    assert await netsetup.delete_link("vnu5")
    for fd in (task, crowded, bare):
        os.close(fd)
    return seen


async def scenario_concurrent(args: dict[str, Any]) -> dict[str, Any]:
    """Starts and removals of many tasks at once on one event loop."""
    from shoal.agent.exec import netsetup

    await netsetup.ensure_bridge(BRIDGE, GATEWAY)
    count = args["count"]
    fds = [_task_netns() for _ in range(count)]

    async def start(n: int) -> None:
        await netsetup.create_veth(BRIDGE, f"vnc{n}", fds[n])
        await asyncio.sleep(0)  # let the others interleave between the steps
        await netsetup.configure_task_side(fds[n], _addr(20 + n), GATEWAY.ip)
        await netsetup.forget_neighbour(BRIDGE, _addr(20 + n).ip)

    await asyncio.gather(*(start(n) for n in range(count)))
    addrs = [
        [a["local"] for i in _ip("-4", "addr", "show", "dev", "eth0", netns_fd=fd)
         for a in i["addr_info"]]
        for fd in fds
    ]  # fmt: skip
    masters = sorted({str(_links()[f"vnc{n}"].get("master")) for n in range(count)})
    deleted = await asyncio.gather(*(netsetup.delete_link(f"vnc{n}") for n in range(count)))
    seen = {"addrs": addrs, "masters": masters, "deleted": deleted, "links_after": sorted(_links())}
    for fd in fds:
        os.close(fd)
    return seen


SCENARIOS = {
    "start": scenario_start,
    "refusals": scenario_refusals,
    "concurrent": scenario_concurrent,
}


# --------------------------------------------------------------------------------------
# pytest side: runs in the root namespaces, owns the node netns
# --------------------------------------------------------------------------------------
@pytest.fixture
def node() -> Iterator[Callable[..., dict[str, Any]]]:
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces")
    name = f"shoal-nsu-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", name], check=True)

    def drive(scenario: str, **args: Any) -> dict[str, Any]:
        payload = json.dumps({"scenario": scenario, **args})
        proc = subprocess.run(
            ["ip", "netns", "exec", name, sys.executable, __file__, payload],
            capture_output=True, text=True, timeout=120,
            env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(REPO)},
        )  # fmt: skip
        assert proc.returncode == 0, f"driver {scenario} failed:\n{proc.stderr}"
        result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
        return result

    try:
        yield drive
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)


@pytest.mark.lab
def test_a_start_plumbs_both_sides_and_removal_takes_the_pair(node: Any) -> None:
    seen = node("start")
    host = seen["host"]
    assert host["linkinfo"]["info_kind"] == "veth"
    assert host["master"] == BRIDGE
    assert "UP" in host["flags"]
    task = seen["task_links"]
    assert sorted(task) == ["eth0", "lo"]
    assert "UP" in task["lo"]["flags"] and "UP" in task["eth0"]["flags"]
    assert task["lo"]["ifindex"] == 1
    assert task["eth0"]["linkinfo"]["info_kind"] == "veth"
    assert task["eth0"]["link_index"] == host["ifindex"]  # its peer is the host side
    (addr,) = seen["task_addrs"][0]["addr_info"]
    assert (addr["local"], addr["prefixlen"]) == ("198.18.251.5", 24)
    default = [r for r in seen["task_routes"] if r["dst"] == "default"]
    assert [(r["gateway"], r["dev"], r["protocol"]) for r in default] == [
        ("198.18.251.1", "eth0", "static")
    ]
    assert "0a:58:de:ad:be:ef" not in json.dumps(seen["neigh"])
    assert seen["deleted"] == [True, False]
    assert seen["links_after"] == sorted(["lo", BRIDGE])
    assert seen["task_links_after"] == ["lo"]  # eth0 went with its peer


@pytest.mark.lab
def test_refusals_leave_nothing_behind_and_a_new_bridge_is_found(node: Any) -> None:
    seen = node("refusals")
    assert seen["taken"] == [errno.EEXIST, "link vnu1 exists"]
    assert seen["taken_same"]  # not enslaved, not brought up, same index
    assert seen["taken_task_links"] == ["lo"]
    assert seen["eth0_taken"] == [errno.EEXIST, os.strerror(errno.EEXIST)]
    assert seen["no_bridge"] == [errno.ENODEV, "bridge shnone does not exist"]
    assert seen["not_bridge"][0] == errno.EOPNOTSUPP
    assert seen["links_after_refusals"] == sorted(["lo", BRIDGE, "vnu1", "vnu1p", "shdum0",
                                                   "shdum1"])  # fmt: skip
    assert seen["task_links_after_refusals"] == ["lo"]
    old_index, old_master = seen["old_bridge"]
    new_index, new_master = seen["new_bridge"]
    assert old_master == new_master == BRIDGE
    assert new_index != old_index
    assert seen["again"][0] == errno.EEXIST
    assert [a["local"] for a in seen["again_addrs"][0]["addr_info"]] == ["198.18.251.7"]
    assert len(seen["again_routes"]) == 1
    assert seen["no_eth0"] == [errno.ENODEV, "eth0 or lo missing in the task namespace"]


@pytest.mark.lab
def test_concurrent_starts_on_one_loop(node: Any) -> None:
    count = 16
    seen = node("concurrent", count=count)
    assert seen["addrs"] == [[f"198.18.251.{20 + n}"] for n in range(count)]
    assert seen["masters"] == [BRIDGE]
    assert seen["deleted"] == [True] * count
    assert seen["links_after"] == sorted(["lo", BRIDGE])


def _driver_main(raw: str) -> None:
    args = json.loads(raw)
    print(json.dumps(asyncio.run(SCENARIOS[args["scenario"]](args))))


if __name__ == "__main__":
    _driver_main(sys.argv[1])

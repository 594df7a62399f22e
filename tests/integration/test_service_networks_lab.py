"""Services find each other, as a user does it (issue 12): two nodes, overlay networks,
busybox containers; from the client container (`docker exec`) the back service's name
resolves to its VIP through 127.0.0.11 and an HTTP request through it answers from the
other node; `tasks.back` lists the task; a container on another network reaches nothing.

All traffic stays in the lab's namespaces (networks inside 198.18.0.0/15); the lab's DNS
has no forwarder (SHOAL_DNS_FORWARDERS=none), so foreign names are refused locally.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from shoal.lab import Lab
from shoal.lab import images as test_images
from tests.integration.labtools import host_of, running, shoal, until

pytestmark = pytest.mark.lab

HTTPD = "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 80 -h /www"
# an HTTP GET with busybox nc (the busybox-static image's wget crashes in its resolver code)
GET = 'printf "GET / HTTP/1.0\\r\\n\\r\\n" | nc -w 3 "$0" 80'


def _get(lab: Lab, task: dict[str, Any], target: str) -> str:
    return _in(lab, task, "sh", "-c", GET, target)


def _busybox_lab(
    name: str, tmp: pytest.TempPathFactory, nodes: int, managers: int, hosts: tuple[str, ...]
) -> Iterator[Lab]:
    """A lab up with the offline busybox image loaded as `bb:net` on `hosts`."""
    lab = Lab(name)
    lab.down()
    try:
        lab.up(nodes=nodes, managers=managers)
        archive = test_images.export("busybox", tmp.mktemp("img") / "bb.tar", "docker-archive",
                                     "bb:net")
        for host in hosts:
            proc = lab.exec(host, ["docker", "image", "load", "-i", str(archive)], capture=True)
            assert "Loaded image: bb:net" in proc.stdout, proc.stderr
        yield lab
    finally:
        lab.down()


@pytest.fixture(scope="module")
def lab2(lab_tag: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    yield from _busybox_lab(lab_tag + "s", tmp_path_factory, 2, 1, ("h1", "h2"))


def _docker(lab: Lab, *args: str, host: str = "h1", check: bool = True) -> str:
    proc = lab.exec(host, ["docker", *args], capture=True, timeout=60)
    if check:
        assert proc.returncode == 0, f"docker {' '.join(args)}: {proc.stderr}"
    return str(proc.stdout) + ("" if check else str(proc.stderr))


def _addresses(nslookup: str) -> list[str]:
    """The answer's addresses from busybox nslookup output (after the server's lines)."""
    answer = nslookup.split("Name:", 1)[-1] if "Name:" in nslookup else ""
    return sorted(w for w in answer.split() if w.count(".") == 3 and w[0].isdigit())


def _task(lab: Lab, service: str) -> dict[str, Any]:
    tasks = until(lambda: running(lab, service), 90, f"{service} running")
    return tasks[0]


def _in(lab: Lab, task: dict[str, Any], *argv: str) -> str:
    host = host_of(lab, task["NodeID"])
    proc = lab.exec(host, ["docker", "exec", task["ID"][:12], *argv], capture=True, timeout=30)
    return str(proc.stdout) + str(proc.stderr)


def test_web_reaches_back_by_name_across_nodes_and_other_networks_cannot(lab2: Lab) -> None:
    _docker(lab2, "network", "create", "-d", "overlay", "appnet")
    _docker(lab2, "network", "create", "-d", "overlay", "--subnet", "198.18.77.0/24", "othernet")
    shoal(lab2, "service", "create", "-d", "--name", "back", "--network", "appnet",
          "--constraint", "node.hostname==shoal-h2", "bb:net", "sh", "-c", HTTPD)
    shoal(lab2, "service", "create", "-d", "--name", "front", "--network", "appnet",
          "--constraint", "node.hostname==shoal-h1", "bb:net", "sleep", "3600")
    shoal(lab2, "service", "create", "-d", "--name", "other", "--network", "othernet",
          "--constraint", "node.hostname==shoal-h1", "bb:net", "sleep", "3600")
    back, front, other = _task(lab2, "back"), _task(lab2, "front"), _task(lab2, "other")
    assert host_of(lab2, back["NodeID"]) == "h2" and host_of(lab2, front["NodeID"]) == "h1"
    service = lab2.client("h1").get("/services/back")
    [vip] = [v["Addr"].split("/")[0] for v in service["Endpoint"]["VirtualIPs"]]
    [back_addr] = [a.split("/")[0] for a in back["NetworksAttachments"][0]["Addresses"]]
    assert vip.startswith("198.18.1.") and back_addr.startswith("198.18.1.")
    assert "nameserver 127.0.0.11" in _in(lab2, front, "cat", "/etc/resolv.conf")
    # the name resolves to the VIP; a request through it answers from h2's task
    until(lambda: vip in _in(lab2, front, "nslookup", "back"), 30, "back -> VIP")
    assert back_addr in _in(lab2, front, "nslookup", "tasks.back")
    hostname = _in(lab2, back, "hostname").strip()
    answer = until(lambda: hostname in (out := _get(lab2, front, "back")) and out,
                   30, "http through the VIP")
    assert answer.startswith("HTTP/1.1 200 OK") and answer.strip().endswith(hostname)
    # another network: the name is not answered, the VIP and the address are unreachable
    assert vip not in _in(lab2, other, "nslookup", "back")
    for target in (vip, back_addr):
        out = _get(lab2, other, target)
        assert hostname not in out and "200 OK" not in out, (target, out)
    [other_addr] = other["NetworksAttachments"][0]["Addresses"]
    assert other_addr.startswith("198.18.77.")  # --subnet honoured
    # dnsrr: the name is the tasks' addresses
    shoal(lab2, "service", "create", "-d", "--name", "rr", "--network", "appnet",
          "--endpoint-mode", "dnsrr", "bb:net", "sleep", "3600")
    [rr_addr] = [a.split("/")[0] for a in _task(lab2, "rr")["NetworksAttachments"][0]["Addresses"]]
    until(lambda: rr_addr in _in(lab2, front, "nslookup", "rr"), 30, "rr -> its task")
    # an update replaces the task: the VIP stays and follows the new task
    shoal(lab2, "service", "update", "--env-add", "X=1", "back")
    assert lab2.client("h1").get("/services/back")["Endpoint"]["VirtualIPs"][0]["Addr"] == (
        service["Endpoint"]["VirtualIPs"][0]["Addr"]
    )
    new_back = until(lambda: [t for t in running(lab2, "back") if t["ID"] != back["ID"]], 90,
                     "the updated back task")[0]
    new_host = _in(lab2, new_back, "hostname").strip()
    until(lambda: new_host in _get(lab2, front, "back"), 30, "the VIP reaches the new task")
    # scaled: tasks.back lists exactly the running tasks, the VIP spreads over them
    for replicas in (3, 1):
        shoal(lab2, "service", "scale", f"back={replicas}")
        want = until(lambda n=replicas: len(r := running(lab2, "back")) == n and r, 90,
                     f"{replicas} back tasks")
        addrs = sorted(t["NetworksAttachments"][0]["Addresses"][0].split("/")[0] for t in want)
        until(lambda a=addrs: _addresses(_in(lab2, front, "nslookup", "tasks.back")) == a,
              30, f"tasks.back = {addrs}")
        if replicas == 3:
            names = {_in(lab2, t, "hostname").strip() for t in want}
            seen = until(lambda names=names: (got := {
                _get(lab2, front, "back").strip().split("\n")[-1] for _ in range(12)
            }) >= names and got,
                         60, "every back task answers through the VIP")
            assert seen == names
    # in use: refused; once the services are gone, removed
    assert "in use" in _docker(lab2, "network", "rm", "appnet", check=False)
    for name in ("back", "front", "other", "rr"):
        shoal(lab2, "service", "rm", name)
    _docker(lab2, "network", "rm", "appnet", "othernet")


@pytest.fixture(scope="module")
def lab3(lab_tag: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    yield from _busybox_lab(lab_tag + "q", tmp_path_factory, 3, 3, ("h1",))


def test_names_and_vips_keep_working_while_the_managers_have_no_quorum(lab3: Lab) -> None:
    _docker(lab3, "network", "create", "-d", "overlay", "qnet")
    for name, argv in (("back", ["sh", "-c", HTTPD]), ("front", ["sleep", "3600"])):
        shoal(lab3, "service", "create", "-d", "--name", name, "--network", "qnet",
              "--constraint", "node.hostname==shoal-h1", "bb:net", *argv)
    back, front = _task(lab3, "back"), _task(lab3, "front")
    [vip] = [v["Addr"].split("/")[0]
             for v in lab3.client("h1").get("/services/back")["Endpoint"]["VirtualIPs"]]
    [back_addr] = [a.split("/")[0] for a in back["NetworksAttachments"][0]["Addresses"]]
    hostname = _in(lab3, back, "hostname").strip()
    until(lambda: hostname in _get(lab3, front, "back"), 30, "back through its VIP")

    # two of the three managers power off: h1 keeps running but cannot commit or read
    lab3.stop("h2")
    lab3.stop("h3")

    def no_quorum() -> bool:  # a read needs the quorum (ReadIndex): it fails or hangs
        try:
            proc = lab3.exec("h1", ["docker", "node", "ls"], capture=True, timeout=20)
        except subprocess.TimeoutExpired:
            return True
        return proc.returncode != 0

    until(no_quorum, 60, "h1 to lose its quorum")

    def in_front(*argv: str) -> str:  # no API lookups of the task's node: they need quorum
        proc = lab3.exec("h1", ["docker", "exec", front["ID"][:12], *argv], capture=True,
                         timeout=30)
        return str(proc.stdout) + str(proc.stderr)

    assert vip in in_front("nslookup", "back")
    assert _addresses(in_front("nslookup", "tasks.back")) == [back_addr]
    answer = in_front("sh", "-c", GET, "back")
    assert answer.startswith("HTTP/1.1 200 OK") and answer.strip().endswith(hostname), answer

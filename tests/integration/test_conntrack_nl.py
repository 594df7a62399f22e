"""conntrack deletions over netlink against the real kernel: the backends that left one
published port are deleted with one dump (`conntrack_nl.dumps`), and only their half-open
flows go; established flows, other backends and other ports stay.

The entries are made with conntrack(8) `-I` in a namespace of the test's own; this file is
also the driver that runs inside it (`ip netns exec <ns> python <this file>`)."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CLIENT, VIP = "198.19.9.1", "198.19.9.2"


def _insert(sport: int, dport: int, backend: str, state: str, replied: bool) -> None:
    args = ["conntrack", "-I", "-p", "tcp", "-s", CLIENT, "-d", VIP, "--sport", str(sport),
            "--dport", str(dport), "-r", backend, "-q", CLIENT, "--reply-port-src", "80",
            "--reply-port-dst", str(sport), "--state", state, "-t", "120"]  # fmt: skip
    if replied:
        args += ["-u", "SEEN_REPLY"]
    subprocess.run(args, check=True, capture_output=True)


def _left() -> list[tuple[int, int, str, str]]:
    out = subprocess.run(["conntrack", "-L", "-p", "tcp"], capture_output=True, text=True).stdout
    flows = []
    for line in out.splitlines():
        def values(key: str, words: list[str] = line.split()) -> list[str]:
            return [w.split("=", 1)[1] for w in words if w.startswith(key + "=")]

        # the original tuple first, then the reply's
        flows.append((int(values("sport")[0]), int(values("dport")[0]), values("src")[1],
                      line.split()[3]))
    return sorted(flows)


def _driver() -> None:
    from shoal.mesh import conntrack_nl

    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    _insert(1000, 8090, "198.19.9.11", "SYN_SENT", False)  # a left backend's: deleted
    _insert(1001, 8090, "198.19.9.11", "SYN_SENT", False)  # deleted
    _insert(1002, 8090, "198.19.9.12", "SYN_SENT", False)  # the other left backend: deleted
    _insert(1003, 8090, "198.19.9.13", "SYN_SENT", False)  # a backend that stays
    _insert(1004, 8090, "198.19.9.11", "ESTABLISHED", True)  # finishes on the draining task
    _insert(1005, 9090, "198.19.9.11", "SYN_SENT", False)  # another port
    deletions = [
        conntrack_nl.parse(("-D", "-p", "tcp", "--state", "SYN_SENT", "--orig-port-dst",
                            "8090", "--reply-src", backend, "--reply-port-src", "80"))
        for backend in ("198.19.9.11", "198.19.9.12")
    ]  # fmt: skip
    done = asyncio.run(conntrack_nl.delete(deletions))
    print(json.dumps({"dumps": len(conntrack_nl.dumps(deletions)), "deleted": done,
                      "left": _left()}))  # fmt: skip


@pytest.fixture
def netns() -> Iterator[str]:
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces")
    name = f"shoal-ctnl-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)


@pytest.mark.lab
def test_the_backends_that_left_a_port_go_in_one_dump(netns: str) -> None:
    done = subprocess.run(
        ["ip", "netns", "exec", netns, sys.executable, __file__],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["dumps"] == 1
    assert result["deleted"] == 3
    assert result["left"] == [
        [1003, 8090, "198.19.9.13", "SYN_SENT"],
        [1004, 8090, "198.19.9.11", "ESTABLISHED"],
        [1005, 9090, "198.19.9.11", "SYN_SENT"],
    ]


if __name__ == "__main__":
    _driver()

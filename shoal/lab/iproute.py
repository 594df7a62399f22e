"""The few `ip` (iproute2) operations the lab needs, each on a named namespace.

The lab is not a hot path, and `ip` output is what a person debugging the lab reads anyway, so
the lab shells out to `ip` instead of speaking netlink. Every operation names the namespace it
acts in (`ip -n NS ...`): nothing here ever touches the root namespace's links, routes or
sysctls. Veths are created inside lab namespaces with both ends placed at creation.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

from shoal.errors import ShoalError

__all__ = [
    "NETNS_DIR",
    "IpError",
    "add_address",
    "add_netns",
    "add_veth",
    "delete_link",
    "delete_netns",
    "kill_netns_pids",
    "link_is_up",
    "link_names",
    "list_netns",
    "make_bridge",
    "netns_exists",
    "netns_pids",
    "peer_netns_names",
    "set_link",
    "set_mac",
]

NETNS_DIR = Path("/run/netns")


class IpError(ShoalError):
    """An `ip` command failed; the message carries its stderr."""


def _ip(*args: str, check: bool = True) -> str:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise IpError(
            f"ip {' '.join(args)}: {proc.stderr.strip() or 'exit ' + str(proc.returncode)}"
        )
    return proc.stdout


def _ip_json(*args: str) -> list[dict[str, Any]]:
    out = _ip("-j", *args).strip()
    data = json.loads(out) if out else []
    return data if isinstance(data, list) else []


def list_netns() -> list[str]:
    """Names of every named network namespace (the pins in /run/netns)."""
    try:
        return sorted(os.listdir(NETNS_DIR))
    except FileNotFoundError:
        return []


def netns_exists(name: str) -> bool:
    return (NETNS_DIR / name).exists()


def add_netns(name: str) -> None:
    """Create `name` with lo up."""
    _ip("netns", "add", name)
    _ip("-n", name, "link", "set", "lo", "up")


def delete_netns(name: str) -> None:
    """Remove the pin; idempotent."""
    if netns_exists(name):
        _ip("netns", "delete", name, check=False)


def make_bridge(ns: str, bridge: str) -> None:
    _ip("-n", ns, "link", "add", bridge, "type", "bridge")
    _ip("-n", ns, "link", "set", bridge, "up")


def add_veth(ns: str, name: str, peer_ns: str, peer_name: str) -> None:
    """A veth pair born with `name` in `ns` and `peer_name` in `peer_ns`, both down."""
    _ip("-n", ns, "link", "add", name, "type", "veth", "peer", "name", peer_name, "netns", peer_ns)


def delete_link(ns: str, name: str) -> None:
    """Delete a link (for a veth, both ends); idempotent."""
    _ip("-n", ns, "link", "delete", name, check=False)


def set_link(ns: str, name: str, *, up: bool, master: str | None = None) -> None:
    args = ["-n", ns, "link", "set", name]
    if master is not None:
        args += ["master", master]
    _ip(*args, "up" if up else "down")


def set_mac(ns: str, name: str, mac: str) -> None:
    _ip("-n", ns, "link", "set", name, "address", mac)


def link_is_up(ns: str, name: str) -> bool | None:
    """Administrative state of a link, None if it (or the namespace) does not exist."""
    if not netns_exists(ns):
        return None
    out = _ip("-n", ns, "-j", "link", "show", "dev", name, check=False).strip()
    if not out:
        return None
    links = json.loads(out)
    return bool(links) and "UP" in links[0].get("flags", [])


def link_names(ns: str) -> list[str]:
    """Names of the links in `ns` ([] if it does not exist)."""
    if not netns_exists(ns):
        return []
    return [str(link.get("ifname")) for link in _ip_json("-n", ns, "link", "show")]


def add_address(ns: str, dev: str, cidr: str) -> None:
    _ip("-n", ns, "address", "add", cidr, "dev", dev)


def netns_pids(name: str) -> list[int]:
    """Pids of the processes whose network namespace is `name`."""
    if not netns_exists(name):
        return []
    out = _ip("netns", "pids", name, check=False)
    return [int(word) for word in out.split() if word.isdigit()]


def kill_netns_pids(name: str) -> int:
    """SIGKILL, by pid, every process left in our namespace `name`; how many were signalled."""
    count = 0
    for pid in netns_pids(name):
        try:
            os.kill(pid, signal.SIGKILL)
            count += 1
        except ProcessLookupError:
            pass
    return count


def peer_netns_names(ns: str) -> list[str]:
    """Names of the namespaces `ns` has links into (its veth peers), as `ip netns list-id`."""
    if not netns_exists(ns):
        return []
    names = []
    for entry in _ip_json("-n", ns, "netns", "list-id"):
        name = entry.get("name")
        if isinstance(name, str):
            names.append(name)
    return names

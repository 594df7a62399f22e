"""Names, addresses and paths of one lab: pure, no I/O.

A lab is identified by its `tag`. The default lab (tag "") is the one `shoal lab` drives:
namespaces `shoal-h1..hN`, `shoal-fabric`, `shoal-client`, state in /run/shoal-lab, data roots
in /var/lib/shoal-lab, cgroups under <cgroup2>/shoal-lab. A tagged lab (tests use one so that
several test sessions on one machine do not collide) puts `shoal-<tag>` where the default
puts `shoal`. Addresses do not depend on the tag: each lab has its own fabric, an isolated L2
segment, so every lab's h1 is 198.18.0.11.

Invariants: host K (1-based) is at 198.18.0.(10+K) (h1=.11 ... h9=.19, h10=.20, ...), the
client at 198.18.0.2, all in 198.18.0.0/24; names are recognised by exact patterns only, so a
sweep never matches another module's namespaces (`shoal-ct-*`, `shoal-md-*`, ...).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from shoal.errors import InvalidArgument

__all__ = [
    "CLIENT",
    "CLIENT_ADDRESS",
    "FABRIC_PREFIXLEN",
    "MAX_NODES",
    "REGISTRY",
    "REGISTRY_ADDRESS",
    "TASK_NETNS_PREFIX",
    "LabLayout",
    "host_address",
    "host_index",
    "host_name",
]

CLIENT = "client"
CLIENT_ADDRESS = "198.18.0.2"
REGISTRY = "registry"  # the lab's image registry (docker-registry), no shoal daemon
REGISTRY_ADDRESS = "198.18.0.3"
FABRIC_PREFIXLEN = 24
MAX_NODES = 244  # 198.18.0.(10+K) must stay below .255
TASK_NETNS_PREFIX = "shoal-t-"  # what daemons name their task namespaces

_HOST_RE = re.compile(r"^h([1-9][0-9]*)$")
_TAG_RE = re.compile(r"^[a-z][a-z0-9]{0,7}$")


def host_name(index: int) -> str:
    """`h<index>` for a valid host index."""
    if not 1 <= index <= MAX_NODES:
        raise InvalidArgument(f"host index {index} out of range 1..{MAX_NODES}")
    return f"h{index}"


def host_index(host: str) -> int:
    """K of `hK`; InvalidArgument for anything else (including `client`)."""
    match = _HOST_RE.match(host)
    if match is None or int(match.group(1)) > MAX_NODES:
        raise InvalidArgument(f"unknown lab host {host!r}: use h1..hN or {CLIENT!r}")
    return int(match.group(1))


def host_address(host: str) -> str:
    """The fabric address of `hK` or `client`."""
    if host == CLIENT:
        return CLIENT_ADDRESS
    if host == REGISTRY:
        return REGISTRY_ADDRESS
    return f"198.18.0.{10 + host_index(host)}"


@dataclass(frozen=True)
class LabLayout:
    """Where everything of the lab `tag` lives. `cgroup_root` is the cgroup2 mount point."""

    tag: str = ""
    cgroup_root: Path = Path("/sys/fs/cgroup")
    run_base: Path = Path("/run")
    data_base: Path = Path("/var/lib")

    def __post_init__(self) -> None:
        if self.tag and (_TAG_RE.match(self.tag) is None or self.tag == "t"):
            raise InvalidArgument(
                f"bad lab tag {self.tag!r}: 1-8 lowercase letters/digits, starting with a letter,"
                " not 't'"
            )

    @property
    def prefix(self) -> str:
        return f"shoal-{self.tag}" if self.tag else "shoal"

    # -- namespaces --------------------------------------------------------------------
    @property
    def fabric_ns(self) -> str:
        return f"{self.prefix}-fabric"

    def netns(self, host: str) -> str:
        """The namespace of `hK` or `client`."""
        if host in (CLIENT, REGISTRY):
            return f"{self.prefix}-{host}"
        return f"{self.prefix}-h{host_index(host)}"

    def is_lab_netns(self, name: str) -> bool:
        """True for this lab's own namespaces (hosts, fabric, client), not task namespaces."""
        rest = name.removeprefix(self.prefix + "-")
        if rest == name:
            return False
        return rest in ("fabric", CLIENT, REGISTRY) or _HOST_RE.match(rest) is not None

    @staticmethod
    def fabric_port(host: str) -> str:
        """The fabric-side end of a host's veth (in the fabric namespace, on fab0)."""
        if host in (CLIENT, REGISTRY):
            return f"v{host}"
        return f"vh{host_index(host)}"

    # -- files -------------------------------------------------------------------------
    @property
    def run_dir(self) -> Path:
        return self.run_base / f"{self.prefix}-lab"

    @property
    def state_file(self) -> Path:
        return self.run_dir / "state.json"

    @property
    def data_dir(self) -> Path:
        return self.data_base / f"{self.prefix}-lab"

    def socket(self, host: str) -> Path:
        return self.run_dir / f"h{host_index(host)}.sock"

    def api_url(self, host: str) -> str:
        """`unix://` URL of the daemon of `hK`; the client talks to h1's."""
        return "unix://" + str(self.socket("h1" if host == CLIENT else host))

    def data_root(self, host: str) -> Path:
        return self.data_dir / f"h{host_index(host)}"

    def daemon_log(self, host: str) -> Path:
        return self.data_root(host) / "daemon.log"

    # -- cgroups -----------------------------------------------------------------------
    @property
    def cgroup_dir(self) -> Path:
        return self.cgroup_root / f"{self.prefix}-lab"

    def cgroup(self, host: str) -> Path:
        """The cgroup of everything that runs on `hK` (daemon, tasks, `lab exec`) or `client`."""
        if host in (CLIENT, REGISTRY):
            return self.cgroup_dir / host
        return self.cgroup_dir / f"h{host_index(host)}"

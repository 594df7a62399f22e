"""The lab's security group: drop a port/protocol on the input of one lab host.

`block` adds the port to a named set of table `inet shoal_lab_block` inside that host's
network namespace (created on first use: one input chain at filter priority -10 that drops
`tcp dport @tcp_ports` and `udp dport @udp_ports`); `unblock` removes one port, or the
whole table.
Only lab namespaces are ever touched, never the root namespace's firewall. Everything
arriving at the host is dropped, loopback included, so the doctor on that host sees its
own closed ports too.
"""

from __future__ import annotations

import json
import re
import subprocess

from shoal.errors import InvalidArgument, ShoalError
from shoal.lab.iproute import NETNS_DIR, netns_exists
from shoal.lab.layout import LabLayout

__all__ = ["TABLE", "block", "blocked", "parse_port_proto", "unblock"]

TABLE = "shoal_lab_block"
_SPEC = re.compile(r"^(\d{1,5})/(tcp|udp)$")
_SKELETON = f"""
table inet {TABLE} {{
  set tcp_ports {{ type inet_service; }}
  set udp_ports {{ type inet_service; }}
  chain input {{
    type filter hook input priority -10; policy accept;
    tcp dport @tcp_ports counter drop
    udp dport @udp_ports counter drop
  }}
}}
"""


def parse_port_proto(text: str) -> tuple[int, str]:
    """`4789/udp` -> (4789, "udp"); anything else is refused."""
    match = _SPEC.match(text.strip().lower())
    if match is None or not 1 <= int(match.group(1)) <= 65535:
        raise InvalidArgument(f"invalid port {text!r}: use PORT/PROTO, e.g. 4789/udp or 2377/tcp")
    return int(match.group(1)), match.group(2)


def _nft(layout: LabLayout, host: str, script: str | None, *args: str) -> str:
    ns = layout.netns(host)
    if not netns_exists(ns):
        raise ShoalError(f"lab host {host} is not up")
    argv = ["nsenter", f"--net={NETNS_DIR / ns}", "--", "nft", *args]
    proc = subprocess.run(argv, input=script, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise ShoalError(f"nft on {host} failed: {proc.stderr.strip()}")
    return proc.stdout


def _has_table(layout: LabLayout, host: str) -> bool:
    tables = json.loads(_nft(layout, host, None, "-j", "list", "tables"))["nftables"]
    return any(t.get("table", {}).get("name") == TABLE for t in tables)


def block(layout: LabLayout, host: str, port: int, proto: str) -> None:
    script = "" if _has_table(layout, host) else _SKELETON
    script += f"add element inet {TABLE} {proto}_ports {{ {port} }}\n"
    _nft(layout, host, script, "-f", "-")


def blocked(layout: LabLayout, host: str) -> list[str]:
    """What `host` drops now, as PORT/PROTO."""
    if not _has_table(layout, host):
        return []
    out: list[str] = []
    for proto in ("tcp", "udp"):
        listing = _nft(layout, host, None, "-j", "list", "set", "inet", TABLE, f"{proto}_ports")
        data = json.loads(listing)
        for item in data["nftables"]:
            for port in item.get("set", {}).get("elem", []):
                out.append(f"{port}/{proto}")
    return sorted(out)


def unblock(layout: LabLayout, host: str, port: int | None = None, proto: str = "") -> None:
    """Reopen one port (`port`/`proto`) or, without one, everything on `host`."""
    if not _has_table(layout, host):
        return
    if port is None:
        _nft(layout, host, None, "delete", "table", "inet", TABLE)
    elif f"{port}/{proto}" in blocked(layout, host):
        _nft(layout, host, f"delete element inet {TABLE} {proto}_ports {{ {port} }}\n", "-f", "-")

"""PURE: the cluster ports the doctor probes, outcomes, verdicts, the advice and the table.

A probe ends `ok` (answered within the slow threshold), `slow` (answered, late), `blocked`
(no answer within its deadline) or `n/a` (nothing to probe: 2377 on a worker, the overlay
before the node has one). Only `blocked` makes the doctor fail.

A peer the managers have marked down (`PeerReport.down`, known on a manager only) whose
every probe went unanswered is most likely off, not firewalled: its row gets one sentence
saying so instead of four security-group rules (it still fails the doctor). A down node
that answers some ports gets the per-port advice: blocked ports can be why it is down.
"""

from __future__ import annotations

import msgspec

__all__ = [
    "ADVICE",
    "DOWN_ADVICE",
    "PORTS",
    "DoctorReport",
    "PeerReport",
    "ProbeResult",
    "render_table",
    "verdict",
]

PORTS = ("2377/tcp", "7946/tcp", "7946/udp", "4789/udp", "mtu")

SLOW_SECONDS = 0.5

ADVICE = {
    "2377/tcp": "without it this node cannot reach the manager: no Raft between managers, no "
    "joins, no task assignments or status reports. Open 2377/tcp between all nodes (a "
    "security-group rule for TCP port 2377).",
    "7946/tcp": "without it gossip cannot exchange its full state: nodes that join late or "
    "recover miss endpoints, and the mesh routes to stale tasks. Open 7946/tcp between all "
    "nodes (a security-group rule for TCP port 7946).",
    "7946/udp": "without it gossip cannot probe the node: it is declared dead, its tasks leave "
    "the mesh on every node and its endpoint updates do not spread. Open 7946/udp between "
    "all nodes (a security-group rule for UDP port 7946).",
    "4789/udp": "without it the overlay carries nothing: the routing mesh cannot forward "
    "requests to tasks on that node (connections hang). Open 4789/udp between all nodes (a "
    "security-group rule for UDP port 4789).",
    "mtu": "full-size packets do not cross the overlay: small requests work, large responses "
    "stall. Allow ICMP fragmentation-needed between nodes, or lower the overlay MTU.",
}


class ProbeResult(msgspec.Struct, frozen=True):
    port: str
    state: str  # ok | slow | blocked | n/a
    seconds: float | None = None
    detail: str = ""


class PeerReport(msgspec.Struct, frozen=True):
    node_id: str
    hostname: str
    addr: str
    results: list[ProbeResult]
    down: bool = False  # the managers marked it down (missed heartbeats)

    @property
    def unreachable(self) -> bool:
        """Down, and nothing that was probed answered: the host itself, not a port."""
        probed = [r for r in self.results if r.state != "n/a"]
        return self.down and bool(probed) and all(r.state == "blocked" for r in probed)


DOWN_ADVICE = ("is down (the managers missed its heartbeats) and answers on no cluster "
               "port: the host or its daemon is not running. Start it, or remove it from "
               "the swarm (`docker node rm`), then run the doctor again.")


class DoctorReport(msgspec.Struct, frozen=True):
    node_id: str
    hostname: str
    addr: str
    peers: list[PeerReport]

    @property
    def blocked(self) -> list[tuple[PeerReport, ProbeResult]]:
        return [(p, r) for p in self.peers for r in p.results if r.state == "blocked"]


def verdict(port: str, seconds: float | None, detail: str = "") -> ProbeResult:
    """The outcome of one probe: `seconds` is its round trip, None when nothing answered."""
    if seconds is None:
        return ProbeResult(port, "blocked", None, detail)
    return ProbeResult(port, "slow" if seconds > SLOW_SECONDS else "ok", seconds, detail)


def _cell(result: ProbeResult) -> str:
    if result.state in ("ok", "slow") and result.seconds is not None:
        return f"{result.state} ({result.seconds * 1000:.1f}ms)"
    return result.state


def render_table(report: DoctorReport) -> str:
    """The node x port table, then one sentence per blocked (or slow) probe."""
    head = ["NODE", "ADDRESS", *(p.upper() for p in PORTS)]
    rows = [head]
    for peer in report.peers:
        by_port = {r.port: r for r in peer.results}
        rows.append([
            (peer.hostname or peer.node_id[:12]) + (" (down)" if peer.down else ""),
            peer.addr,
            *(_cell(by_port[p]) if p in by_port else "n/a" for p in PORTS),
        ])
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = ["   ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
             for row in rows]
    if not report.peers:
        lines.append("(no other node to probe)")
    for peer in report.peers:
        if peer.unreachable:
            lines.append(f"{peer.hostname or peer.node_id[:12]} {DOWN_ADVICE}")
            continue
        for r in peer.results:
            if r.state not in ("blocked", "slow"):
                continue
            name = peer.hostname or peer.node_id[:12]
            what = "blocked" if r.state == "blocked" else "slow"
            extra = f" ({r.detail})" if r.detail else ""
            lines.append(f"{name} {r.port} {what}{extra}: {ADVICE[r.port]}")
    return "\n".join(lines)

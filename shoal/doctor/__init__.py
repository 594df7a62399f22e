"""shoal doctor: can this node reach every other node on each cluster port?

`model` (PURE: the ports, a probe's outcome, the verdict and the sentence a failure gets, the
table), `probes` (one async probe per port: a TLS handshake on 2377/tcp, a gossip ping on
7946/udp, a gossip push-pull on 7946/tcp, an ICMP echo through the VXLAN device for
4789/udp and the overlay's path MTU), `run` (who to probe, from a running daemon; all
probes at once, each under its own deadline). The probes run inside the daemon (GET
/shoal/doctor): it holds the node's certificate, the gossip keys and the overlay, and it
sits in the node's network namespace (docs/design/doctor.md).
"""

from shoal.doctor.model import PORTS, DoctorReport, PeerReport, ProbeResult, render_table
from shoal.doctor.run import run_doctor

__all__ = ["PORTS", "DoctorReport", "PeerReport", "ProbeResult", "render_table", "run_doctor"]

"""The lab: a multi-host shoal cluster on one Linux machine, out of network namespaces.

It is both the demo (`shoal lab demo`) and the test bed of the integration tests. Hosts
`shoal-h1..hN` (198.18.0.11, .12, ...) and a `shoal-client` (198.18.0.2) hang off a bridge
in a `shoal-fabric` namespace; each host runs its own `shoal daemon` in its own cgroup. No lab
namespace has a route out, and the root namespace is never changed.

`Lab` (shoal.lab.lab) is the Python API; `lab` (shoal.lab.cli) the click group, which the
main CLI loads lazily.
"""

from shoal.lab.lab import HostStatus, Lab

__all__ = ["HostStatus", "Lab"]

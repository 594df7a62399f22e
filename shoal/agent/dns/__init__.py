"""The embedded DNS server every task asks at 127.0.0.11 (Docker's embedded resolver).

- `names`: pure. A `NameTable` built from the endpoint table's network attachments answers
  `SERVICE`/alias (VIP, or ready tasks' addresses in dnsrr mode) and `tasks.SERVICE` (ready
  tasks' addresses), only for networks the asking task shares with the target.
- `wire`: a query's bytes to a response's bytes (dnspython does the wire format); names
  that are not the cluster's go to the node's forwarders, or get REFUSED when it has none.
- `netns`, `server`: one UDP and one TCP socket bound to 127.0.0.11:53 inside each task's
  network namespace (created by a short-lived thread that setns()es), served by the
  daemon's event loop; closed when the task goes.

Invariant: the answer for a task never names an address on a network it is not attached to.
"""

"""Service networks' data plane on a node: per-network bridges, task interfaces, /32 routes
over the cluster VXLAN, VIP load-balancing and isolation in nftables.

- `plan`: pure. From the endpoint table (every task's per-network address, VIP and
  readiness) and the peers' task slices, what this node must hold: a bridge per network
  with local tasks (holding the network's gateway), an interface per local task and
  network (`ethN`, the address as a /32, the subnet routed via the gateway), a /32 route per
  remote task of those networks via its node's VXLAN next hop, and one nftables table
  (`ip shoal-svcnet`): VIP -> ready tasks (DNAT, every port, TCP and UDP) and isolation.
- `apply`: makes the kernel match a plan (pyroute2, `nft -f -`), undoes all of it on close.

Invariants: a task's traffic to another network's addresses is dropped on its node; a VIP
answers only through ready tasks; the plan is a value, recomputed on each table change.
"""

"""The leader's side of the cluster mesh: `keys` (gossip key rotation).

The view every node needs (overlay peers, gossip keys and addresses, the live task set)
is computed by the pure `shoal.api.netview`, which agent and manager both import.
"""

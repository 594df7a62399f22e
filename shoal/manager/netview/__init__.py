"""What every node must know to take part in the cluster mesh, computed by the managers.

`view` (PURE: overlay peers, gossip keys and addresses, the live task set, from the store's
objects), `keys` (the leader's gossip key rotation).
"""

from shoal.manager.netview.view import NetPeer, NetView, network_view

__all__ = ["NetPeer", "NetView", "network_view"]

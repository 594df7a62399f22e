"""The cluster's PKI: root CA, join tokens, node certificates and their renewal.

    root.py      RootCA (made at `swarm init`), join tokens `SWMTKN-1-<CA digest>-<secret>`
    certs.py     keys and CSRs (made on the node), node certificates (signed by the CA) with
                 the node ID in CN and the role in OU; identity of a certificate
    files.py     a node's TLS material on disk (certificates/ under the data root)
    renewal.py   renews the node certificate before it expires, without a restart

Invariants: a node's private key is generated on that node and never sent anywhere; a
certificate's role is the only authority for what its holder may call on 2377.
"""

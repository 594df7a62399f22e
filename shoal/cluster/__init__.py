"""The 2377 cluster channel: msgpack payloads over mutual TLS, served by one front.

    tlsfront.py  TLS termination: client certificate optional (joins) but verified against
                 the cluster CA when given; the connection's ALPN protocol picks its server
    rpc.py       shoal-rpc/1: the calls (unary, streams both ways) multiplexed on one TLS
                 connection per client; statuses as gRPC's codes
    frames.py    framed connections (shoal-frames/1): Raft/Stream, Control/ForwardStream
    server.py    ClusterServer: methods with the roles allowed to call them, size limits;
                 ShoalError <-> status at the boundary
    client.py    CA pinning (fetch_root_ca) and ClusterClient (one connection, deadlines)
    wire.py      the messages (msgspec structs)
    raft.py      Raft/Send, Raft/Stream, Raft/Join, for the Raft driver (managers only)
    forward.py   Control/Forward(Stream): a follower's API requests replayed on the leader

Methods (the registrations; "Service/Method"):

    CA/Join                     anyone (token checked)   shoal.manager.issuer
    CA/Renew, CA/Role           worker, manager          shoal.manager.issuer
    CA/RootKey                  manager                  shoal.manager.issuer
    Dispatcher/Session          worker, manager          shoal.manager.dispatcher
    Dispatcher/UpdateTaskStatus worker, manager          shoal.manager.dispatcher
    Dispatcher/Heartbeat        worker, manager          shoal.manager.dispatcher
    Raft/Send, Raft/Join        manager                  shoal.cluster.raft
    Raft/Stream (framed)        manager                  shoal.cluster.raft
    Control/Forward             manager                  shoal.cluster.forward
    Control/ForwardStream (framed) manager               shoal.cluster.forward

Invariant: the only identity a handler trusts is the one in the caller's verified
certificate (node ID in CN, role in OU); nothing the caller sends can change it.
"""

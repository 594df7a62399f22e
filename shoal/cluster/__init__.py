"""The 2377 cluster channel: gRPC (grpc.aio) over mutual TLS, msgpack payloads.

    tlsfront.py  TLS termination: client certificate optional (joins) but verified against
                 the cluster CA when given; identity of each connection for the handlers
    server.py    ClusterServer: methods with the roles allowed to call them, size limits,
                 keepalive; ShoalError <-> gRPC status at the boundary
    client.py    CA pinning (fetch_root_ca) and ClusterClient (mutual TLS, deadlines)
    wire.py      the messages (msgspec structs)
    raft.py      Raft.Send, for the Raft driver (managers only)

Methods (all under /shoal.<Service>/<Method>):

    CA/Join                     anyone (token checked)   shoal.manager.issuer
    CA/Renew                    worker, manager          shoal.manager.issuer
    Dispatcher/Session          worker, manager          shoal.manager.dispatcher
    Dispatcher/UpdateTaskStatus worker, manager          shoal.manager.dispatcher
    Dispatcher/Heartbeat        worker, manager          shoal.manager.dispatcher
    Raft/Send                   manager                  shoal.cluster.raft

Invariant: the only identity a handler trusts is the one in the caller's verified
certificate (node ID in CN, role in OU); nothing the caller sends can change it.
"""

"""A node: what runs on one host, and the one role it holds now.

`node.py` (`Node`, swarmkit's node/node.go) owns what every host has (task runtime, image
store, endpoint table, membership, certificate) and exactly one role object: a
`shoal.manager.role.ManagerRole` or a `worker.WorkerRole`. Each role's run gets the host
parts built for it (`host.py`: node network, agent). Changing role (`swarm_ops.py`:
init/join/leave/force-new-cluster; `role_change.py`: promote/demote) stops one role object
and starts the other; nothing is reset field by field. `network.py` and `mesh_sync.py`
program the data plane from the endpoint table. The node imports the manager and the agent;
neither imports the node.
"""

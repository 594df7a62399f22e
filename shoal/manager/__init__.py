"""The manager side of a node: store, Raft, CA, dispatcher, control API, reconcilers.

`role.py` (`ManagerRole`, swarmkit's manager/manager.go) holds it all for one node while
it is a manager; `leader.py` (`LeaderDuties`) is the one place leader-only work starts and
stops. Every change to the cluster state goes through `state.Store.update` (the control
API in `controlapi/` validates first); only `Store.apply` mutates the tables. The manager
never imports the node or the agent (shared contracts live in `shoal.api`).
"""

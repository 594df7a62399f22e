"""A node: what runs on one host — the manager (when this node is one), the agent, the mesh.

`daemon.py` assembles the pieces behind the API; `manager.py` starts and stops the
leader-only reconcilers in one place; `mesh_sync.py` programs the data plane.
"""

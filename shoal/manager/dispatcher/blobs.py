"""What a node is given besides its tasks: the secrets, configs and registry credentials of
the tasks assigned to it (swarmkit's assignment set): pure over a read view.

A task counts from its assignment until it ends (a terminal observed state): once every
task of this node that references a secret has ended, the next session message leaves the
secret out and the node forgets it. Nothing here is ever sent to another node.
"""

from __future__ import annotations

from collections.abc import Iterable

from shoal.api.blobs import BlobData
from shoal.api.container import ConfigReference, SecretReference, as_typed
from shoal.api.states import is_terminal
from shoal.api.types import Task
from shoal.manager.controlapi.secrets import decode_data
from shoal.manager.state.store import ReadView

__all__ = ["NodeBlobs", "node_blobs", "tasks_holding"]


NodeBlobs = tuple[list[BlobData], list[BlobData], dict[str, str]]


def tasks_holding(tasks: Iterable[Task], node_id: str) -> list[Task]:
    """The node's tasks that may still need their secrets (assigned, not ended)."""
    return [t for t in tasks if t.node_id == node_id and not is_terminal(t.status.state)]


def _ids(tasks: list[Task]) -> tuple[set[str], set[str]]:
    secrets: set[str] = set()
    configs: set[str] = set()
    for task in tasks:
        container = task.spec.container_spec
        if container is None:
            continue
        secrets.update(r.secret_id for r in as_typed(container.secrets, list[SecretReference]))
        configs.update(r.config_id for r in as_typed(container.configs, list[ConfigReference]))
    return secrets, configs


def node_blobs(view: ReadView, node_id: str) -> NodeBlobs:
    """(secrets, configs, registry auth by service ID) for `node_id`, sorted by ID."""
    holding = tasks_holding(view.list("task"), node_id)
    secret_ids, config_ids = _ids(holding)
    secrets = [
        BlobData(s.id, decode_data(s.spec.data))
        for s in sorted(view.list("secret"), key=lambda s: s.id)
        if s.id in secret_ids
    ]
    configs = [
        BlobData(c.id, decode_data(c.spec.data))
        for c in sorted(view.list("config"), key=lambda c: c.id)
        if c.id in config_ids
    ]
    auth: dict[str, str] = {}
    for service_id in sorted({t.service_id for t in holding}):
        service = view.get("service", service_id)
        if service is not None and service.registry_auth:
            auth[service_id] = service.registry_auth
    return secrets, configs, auth

"""What a node is given besides its tasks: the secrets, configs and registry credentials of
the tasks assigned to it (swarmkit's assignment set): pure over a read view.

A task counts from its assignment until it ends (a terminal observed state): once every
task of this node that references a secret has ended, the next session message leaves the
secret out and the node forgets it. Nothing here is ever sent to another node.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from shoal.api.blobs import BlobData
from shoal.api.container import ConfigReference, SecretReference, as_typed
from shoal.api.states import is_terminal
from shoal.api.types import Task
from shoal.manager.controlapi.secrets import decode_data
from shoal.manager.state.store import ReadView

__all__ = ["BlobRefs", "NodeBlobs", "blob_refs", "node_blobs", "tasks_holding", "touches"]


NodeBlobs = tuple[list[BlobData], list[BlobData], dict[str, str]]
BlobRefs = tuple[set[str], set[str], set[str]]  # secret, config and service IDs a node uses


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


def blob_refs(view: ReadView, node_id: str) -> BlobRefs:
    """What `node_blobs` of `node_id` is made of: the IDs of the secrets, configs and
    services (registry credentials) of its tasks that have not ended."""
    holding = tasks_holding(view.list("task"), node_id)
    secret_ids, config_ids = _ids(holding)
    return secret_ids, config_ids, {t.service_id for t in holding}


def node_blobs(view: ReadView, node_id: str, refs: BlobRefs | None = None) -> NodeBlobs:
    """(secrets, configs, registry auth by service ID) for `node_id`, sorted by ID; `refs`:
    its `blob_refs`, when the caller has them."""
    secret_ids, config_ids, service_ids = refs if refs is not None else blob_refs(view, node_id)
    secrets = [BlobData(s.id, decode_data(s.spec.data))
               for s in (view.get("secret", i) for i in sorted(secret_ids)) if s is not None]
    configs = [BlobData(c.id, decode_data(c.spec.data))
               for c in (view.get("config", i) for i in sorted(config_ids)) if c is not None]
    auth: dict[str, str] = {}
    for service_id in sorted(service_ids):
        service = view.get("service", service_id)
        if service is not None and service.registry_auth:
            auth[service_id] = service.registry_auth
    return secrets, configs, auth


def touches(events: Iterable[Any], node_id: str, refs: BlobRefs) -> bool:
    """Whether store events (`Event`s of one commit) may change what `node_id` is given:
    its tasks (assigned there, or no longer), or a secret, config or service it uses.
    Other nodes' tasks, secrets nobody here uses yet and the like do not."""
    secret_ids, config_ids, service_ids = refs
    for event in events:
        kind = event.kind
        if kind == "task":
            if event.obj.node_id == node_id or (
                event.old is not None and event.old.node_id == node_id
            ):
                return True
        elif kind == "secret":
            if event.obj.id in secret_ids:
                return True
        elif kind == "config":
            if event.obj.id in config_ids:
                return True
        elif kind == "service" and event.obj.id in service_ids:
            return True
    return False

"""/tasks: list (with docker's filters, `_up-to-date` included), inspect, logs."""

from __future__ import annotations

from aiohttp import web

from shoal.api.types import Task
from shoal.httpapi.common import (
    check_filter_keys,
    daemon_of,
    json_response,
    label_matches,
    parse_filters,
    route,
)
from shoal.httpapi.logs import stream_logs
from shoal.manager.controlapi.resolve import resolve
from shoal.manager.state.store import ReadView

__all__ = ["add_routes"]


def _filtered(view: ReadView, filters: dict[str, list[str]]) -> list[Task]:
    services = {s.id: s for s in view.services.list()}
    nodes = view.nodes.list()
    service_ids: set[str] | None = None
    if filters.get("service"):
        service_ids = set()
        for ref in filters["service"]:
            service_ids.add(ref)  # tasks of a removed service still match its ID
            service_ids |= {
                s.id
                for s in services.values()
                if s.id == ref or s.spec.name == ref or s.id.startswith(ref)
            }
    node_ids: set[str] | None = None
    if filters.get("node"):
        node_ids = set()
        for ref in filters["node"]:
            node_ids |= {
                n.id
                for n in nodes
                if n.id == ref or n.description.hostname == ref or n.id.startswith(ref)
            }

    def keep(task: Task) -> bool:
        if service_ids is not None and task.service_id not in service_ids:
            return False
        if node_ids is not None and task.node_id not in node_ids:
            return False
        if filters.get("id") and not any(task.id.startswith(v) for v in filters["id"]):
            return False
        if filters.get("desired-state") and task.desired_state not in filters["desired-state"]:
            return False
        if filters.get("name"):
            name = f"{task.service_name}.{task.slot or task.node_id}"
            if not any(name.startswith(v) for v in filters["name"]):
                return False
        if filters.get("label"):
            # swarmkit matches a task's labels filter against its service's labels (the
            # stack commands find a stack's tasks by its namespace label)
            service = services.get(task.service_id)
            labels = {**(service.spec.labels or {})} if service is not None else {}
            labels.update(task.labels or {})
            if not all(label_matches(labels, expr) for expr in filters["label"]):
                return False
        if filters.get("_up-to-date"):
            service = services.get(task.service_id)
            if service is None or task.spec_version != service.spec_version:
                return False
        return True

    return [t for t in view.tasks.list() if keep(t)]


async def list_tasks(request: web.Request) -> web.StreamResponse:
    store = daemon_of(request).require_manager()
    filters = parse_filters(request)
    check_filter_keys(
        filters, {"id", "name", "service", "node", "label", "desired-state", "_up-to-date"}
    )
    tasks = _filtered(store.view(), filters)
    return json_response(sorted(tasks, key=lambda t: (t.service_id, t.slot, t.version.index)))


async def inspect(request: web.Request) -> web.StreamResponse:
    store = daemon_of(request).require_manager()
    return json_response(resolve(store.view().tasks, request.match_info["id"]))


async def logs(request: web.Request) -> web.StreamResponse:
    daemon = daemon_of(request)
    store = daemon.require_manager()
    task = resolve(store.view().tasks, request.match_info["id"])
    return await stream_logs(request, daemon, task_id=task.id)


def add_routes(router: web.UrlDispatcher) -> None:
    route(router, "GET", "/tasks", list_tasks)
    route(router, "GET", "/tasks/{id}", inspect)
    route(router, "GET", "/tasks/{id}/logs", logs)

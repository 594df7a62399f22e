"""Service create / update / remove: validation, defaults, port allocation, one transaction each."""

from __future__ import annotations

import base64
import binascii
import json

import msgspec

from shoal.api.timefmt import now_rfc3339
from shoal.api.types import Endpoint, Service, ServiceSpec, UpdateStatus
from shoal.errors import Conflict, InvalidArgument, OutOfSequence
from shoal.manager.allocator.netalloc import check_aliases, service_vips
from shoal.manager.allocator.ports import allocate_ports
from shoal.manager.controlapi.configs import CONFIGS
from shoal.manager.controlapi.names import random_name
from shoal.manager.controlapi.networks import resolve_attachments
from shoal.manager.controlapi.resolve import resolve
from shoal.manager.controlapi.secrets import SECRETS, check_references
from shoal.manager.controlapi.validation import (
    check_mesh_ports,
    validate_service_spec,
    with_defaults,
)
from shoal.manager.state.store import Store, Tx, new_id

__all__ = ["check_registry_auth", "create_service", "remove_service", "update_service"]


def _prepare(tx: Tx, current: Service, spec: ServiceSpec) -> tuple[ServiceSpec, Endpoint]:
    """`current` is the stored service (a blank one with the new ID on create)."""
    service_id = current.id
    validate_service_spec(spec)
    spec = with_defaults(resolve_attachments(tx, spec))
    check_references(tx, SECRETS, spec)
    check_references(tx, CONFIGS, spec)
    for other in tx.services.list():
        if other.id != service_id and other.spec.name == spec.name:
            raise Conflict(
                "rpc error: code = AlreadyExists desc = name conflicts with an existing "
                f"object: service {spec.name} already exists"
            )
    endpoint_spec = spec.endpoint_spec
    assert endpoint_spec is not None
    others = tx.services.list()
    ports = allocate_ports(service_id, endpoint_spec.ports or [], others)
    check_mesh_ports(service_id, spec, ports, others)
    check_aliases(tx, service_id, spec)
    vips = service_vips(tx, current, spec)
    return spec, Endpoint(spec=endpoint_spec, ports=ports or None, virtual_ips=vips)


def check_registry_auth(encoded: str) -> str:
    """X-Registry-Auth: base64url of a JSON object (docker's AuthConfig); refused otherwise."""
    if not encoded:
        return ""
    try:
        padded = encoded + "=" * (-len(encoded) % 4)
        decoded = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, binascii.Error):
        decoded = None
    if not isinstance(decoded, dict):
        raise InvalidArgument("invalid X-Registry-Auth header: not base64url-encoded JSON")
    return encoded


async def create_service(store: Store, spec: ServiceSpec, registry_auth: str = "") -> Service:
    auth = check_registry_auth(registry_auth)
    if not spec.name:  # dockerd names it before swarmkit's checks
        spec = msgspec.structs.replace(spec, name=random_name())

    def fn(tx: Tx) -> Service:
        service_id = new_id()
        full, endpoint = _prepare(tx, Service(id=service_id), spec)
        service = Service(
            id=service_id, spec=full, endpoint=endpoint, spec_version=1, registry_auth=auth
        )
        tx.services.create(service)
        return service

    return await store.update(fn)


def _task_template_changed(old: ServiceSpec, new: ServiceSpec) -> bool:
    return msgspec.json.encode(old.task_template) != msgspec.json.encode(new.task_template)


async def update_service(
    store: Store,
    ref: str,
    version: int | None,
    spec: ServiceSpec,
    rollback: bool = False,
    registry_auth: str = "",
) -> Service:
    """`registry_auth` replaces the stored credentials when given; else they are kept
    (dockerd's registryAuthFrom=spec)."""
    auth = check_registry_auth(registry_auth)

    def fn(tx: Tx) -> Service:
        service: Service = resolve(tx.services, ref)
        if version is None:
            raise InvalidArgument("version is required to update a service")
        if version != service.version.index:
            raise OutOfSequence("rpc error: code = Unknown desc = update out of sequence")
        new_spec = spec
        if rollback:
            if service.previous_spec is None:
                raise InvalidArgument(
                    "rpc error: code = FailedPrecondition desc = service "
                    f"{service.id} does not have a previous spec"
                )
            new_spec = service.previous_spec
        if new_spec.name != service.spec.name:
            raise InvalidArgument(
                "rpc error: code = Unimplemented desc = renaming services is not supported"
            )
        full, endpoint = _prepare(tx, service, new_spec)
        template = service.spec_version
        if rollback and service.previous_spec_version:
            template = service.previous_spec_version
        elif _task_template_changed(service.spec, full):
            template = max(service.spec_version, service.previous_spec_version) + 1
        service.previous_spec_version, service.spec_version = service.spec_version, template
        service.previous_spec = service.spec
        service.spec = full
        service.endpoint = endpoint
        service.update_status = None
        if auth:
            service.registry_auth = auth
        if rollback:  # swarmkit: the orchestrator rolls back with RollbackConfig
            service.update_status = UpdateStatus(
                state="rollback_started",
                started_at=now_rfc3339(),
                message="manually requested rollback",
            )
        tx.services.update(service)
        return service

    return await store.update(fn)


async def remove_service(store: Store, ref: str) -> Service:
    """Delete the service; the orchestrator then shuts its tasks down and removes them."""

    def fn(tx: Tx) -> Service:
        service: Service = resolve(tx.services, ref)
        tx.services.delete(service.id)
        return service

    return await store.update(fn)

"""Secrets, and the machinery configs share with them: validation, create / update / remove,
and the checks of a service's references to them.

Secrets and configs are blobs of the replicated store (base64 in the JSON, as Go encodes
`[]byte`). They follow swarmkit's rules: names of at most 64 `[a-zA-Z0-9-_.]`, data of at
least one byte and less than 500 KB (secrets) or 1000 KB (configs), only Labels may change
on update, and an object a service references cannot be removed. A secret's data never
leaves the manager through the API (the HTTP layer strips it); delivering secrets and
configs into tasks is the dispatcher's (`dispatcher/blobs.py`): a node gets those of its tasks.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

import msgspec

from shoal.api.container import ConfigReference, SecretReference, as_typed
from shoal.api.types import Config, ConfigSpec, Secret, SecretSpec, ServiceSpec
from shoal.errors import Conflict, InvalidArgument, OutOfSequence
from shoal.manager.controlapi.resolve import resolve
from shoal.manager.state.store import ReadView, Store, Tx, new_id
from shoal.manager.state.tables import Table, TxTable

__all__ = [
    "SECRETS",
    "BlobKind",
    "check_references",
    "create_blob",
    "create_secret",
    "decode_data",
    "remove_blob",
    "remove_secret",
    "update_blob",
    "update_secret",
    "users_of",
]

Blob = Secret | Config
BlobSpec = SecretSpec | ConfigSpec
_NAME = re.compile(r"^[a-zA-Z0-9]+(?:[a-zA-Z0-9-_.]*[a-zA-Z0-9])?$")


@dataclass(frozen=True)
class BlobKind:
    """What differs between secrets and configs."""

    kind: str  # "secret" | "config": the store kind and the word in messages
    max_size: int
    needs_non_space: bool
    obj_type: type[Secret] | type[Config]
    refs_field: str  # the ContainerSpec attribute holding the references
    id_key: str  # keys of one reference
    name_key: str

    def table(self, view: ReadView | Tx) -> Table[Blob]:
        """The typed table of this kind in a read view (or, read only, a transaction)."""
        return Table[Blob](view, self.kind, self.obj_type)

    def tx_table(self, tx: Tx) -> TxTable[Blob]:
        """The typed table of this kind in a transaction."""
        return TxTable[Blob](tx, self.kind, self.obj_type)


SECRETS = BlobKind("secret", 500 * 1024, True, Secret, "secrets", "SecretID", "SecretName")


def _bad(message: str) -> InvalidArgument:
    return InvalidArgument(f"rpc error: code = InvalidArgument desc = {message}")


def decode_data(data: str | None) -> bytes:
    """The bytes of a base64 `Data` field (Go's decoder skips line breaks, so does this)."""
    if not data:
        return b""
    try:
        return base64.b64decode(data.replace("\r", "").replace("\n", ""), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidArgument("Data: illegal base64 data") from None


def _validate(kind: BlobKind, spec: BlobSpec) -> None:
    if not spec.name:
        raise _bad("name must be provided")
    if len(spec.name) > 64 or not _NAME.match(spec.name):
        raise _bad(
            "invalid name, only 64 [a-zA-Z0-9-_.] characters allowed, and the start and end "
            "character must be [a-zA-Z0-9]"
        )
    if isinstance(spec, SecretSpec) and spec.driver is not None:
        raise InvalidArgument("shoal does not support external secret drivers (Driver)")
    data = decode_data(spec.data)
    if not 1 <= len(data) < kind.max_size:
        raise _bad(f"{kind.kind} data must be larger than 0 and less than {kind.max_size} bytes")
    if kind.needs_non_space and not data.strip():
        raise _bad(f"{kind.kind} data must contain non white space bytes")


async def create_blob(store: Store, kind: BlobKind, spec: BlobSpec) -> Blob:
    _validate(kind, spec)

    def fn(tx: Tx) -> Blob:
        blobs = kind.tx_table(tx)
        # the name index: a scan of every blob per create cost ~0.5 ms at 5,000 secrets
        if blobs.named(spec.name):
            raise Conflict(
                f"rpc error: code = AlreadyExists desc = {kind.kind} {spec.name} already exists"
            )
        obj = kind.obj_type(id=new_id(), spec=spec)  # type: ignore[arg-type]
        blobs.create(obj)
        return obj

    return await store.update(fn)


async def update_blob(
    store: Store, kind: BlobKind, ref: str, version: int | None, spec: BlobSpec
) -> Blob:
    """Only Labels may change; the data may be sent again if it is the same (stack deploy)."""
    if version is None:
        raise InvalidArgument(f"version is required to update a {kind.kind}")

    def fn(tx: Tx) -> Blob:
        obj = resolve(kind.tx_table(tx), ref)
        if obj.spec.name != spec.name or (
            spec.data and decode_data(spec.data) != decode_data(obj.spec.data)
        ):
            raise _bad("only updates to Labels are allowed")
        if version != obj.version.index:
            raise OutOfSequence("rpc error: code = Unknown desc = update out of sequence")
        obj.spec.labels = spec.labels
        kind.tx_table(tx).update(obj)
        return obj

    return await store.update(fn)


def users_of(view: ReadView | Tx, kind: BlobKind, obj_id: str) -> list[str]:
    """Names of the services that reference the object."""
    names = []
    for service in view.services.list():
        if any(_ref_id(kind, r) == obj_id for r in _refs(kind, service.spec)):
            names.append(service.spec.name)
    return sorted(names)


async def remove_blob(store: Store, kind: BlobKind, ref: str) -> Blob:
    def fn(tx: Tx) -> Blob:
        obj = resolve(kind.tx_table(tx), ref)
        users = users_of(tx, kind, obj.id)
        if users:
            word = "service" if len(users) == 1 else "services"
            raise _bad(
                f"{kind.kind} '{obj.spec.name}' is in use by the following {word}: "
                + ", ".join(users)
            )
        kind.tx_table(tx).delete(obj.id)
        return obj

    return await store.update(fn)


# -- references from services -----------------------------------------------------------


Reference = SecretReference | ConfigReference


def _refs(kind: BlobKind, spec: ServiceSpec) -> list[Reference]:
    """The service's references of `kind`, typed (a malformed one is refused)."""
    container = spec.task_template.container_spec
    if container is None:
        return []
    typ = SecretReference if kind.kind == "secret" else ConfigReference
    try:
        return list(as_typed(getattr(container, kind.refs_field), list[typ]))  # type: ignore[valid-type]
    except msgspec.ValidationError:
        raise _bad(f"malformed {kind.kind} reference") from None


def _ref_id(kind: BlobKind, ref: Reference) -> str:
    return ref.secret_id if isinstance(ref, SecretReference) else ref.config_id


def _ref_name(kind: BlobKind, ref: Reference) -> str:
    return ref.secret_name if isinstance(ref, SecretReference) else ref.config_name


def check_references(view: ReadView | Tx, kind: BlobKind, spec: ServiceSpec) -> None:
    """Refuse malformed references, clashing targets and unknown objects (swarmkit's rules)."""
    targets: dict[str, str] = {}
    missing: list[str] = []
    for ref in _refs(kind, spec):
        obj_id, name = _ref_id(kind, ref), _ref_name(kind, ref)
        if not obj_id or not name:
            raise _bad(f"malformed {kind.kind} reference")
        runtime = ref.runtime if isinstance(ref, ConfigReference) else None
        if ref.file is None and runtime is None:
            raise _bad(f"malformed {kind.kind} reference, no target provided")
        if ref.file is not None:
            target = ref.file.name
            if not target:
                raise _bad(
                    f"malformed file {kind.kind} reference, invalid target file name provided"
                )
            if target in targets:
                raise _bad(
                    f"{kind.kind} references '{targets[target]}' and '{name}' have a "
                    f"conflicting target: '{target}'"
                )
            targets[target] = name
        obj = kind.table(view).get(obj_id)
        if obj is None or obj.spec.name != name:
            missing.append(name)
    if missing:
        word = kind.kind if len(missing) == 1 else f"{kind.kind}s"
        raise _bad(f"{word} not found: {', '.join(missing)}")


# -- secrets ----------------------------------------------------------------------------


async def create_secret(store: Store, spec: SecretSpec) -> Secret:
    obj = await create_blob(store, SECRETS, spec)
    assert isinstance(obj, Secret)
    return obj


async def update_secret(store: Store, ref: str, version: int | None, spec: SecretSpec) -> Secret:
    obj = await update_blob(store, SECRETS, ref, version, spec)
    assert isinstance(obj, Secret)
    return obj


async def remove_secret(store: Store, ref: str) -> None:
    await remove_blob(store, SECRETS, ref)

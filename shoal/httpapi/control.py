"""The write handlers' control API calls, run on the leader (swarmkit's raft proxy).

The handlers of cluster writes (create / update / remove of services, secrets, configs
and networks; node updates) do their HTTP work (decode the body, read the query and the
headers, shape the response) wherever the request arrives, then make one control API call
through `call`. On the leader (or a manager that knows no leader) the call runs the
controlapi function on the local store. On a follower that knows its leader it is proxied:
the operation's name and its msgpack-encoded arguments travel over the follower's
`Control/ForwardStream` to the leader (a `ForwardRequest` with the method `CONTROL`, see
shoal/cluster/forward.py), which runs the same function on its store and answers the
msgpack-encoded result, or the error: its class in the shoal.errors tree, its HTTP status
and its message, raised again on the follower so the client gets what a local call gives.

A proxied call that meets `NotLeader` on the leader is answered like a replayed request
that did (503 with `X-Shoal-Not-Leader`): `RaftRole.forward` waits for the next leader and
sends it there; `ElectedHere` (this manager leads now) runs it here. The leader never
proxies a call again, and a request replayed on the leader's twin (`X-Shoal-Forwarded`)
runs its call locally. Every other request keeps the general fallback of
`forwarding.forward_middleware`: a handler that meets `NotLeader` is replayed on the leader.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import msgspec
from aiohttp import web

from shoal import errors
from shoal.api.types import (
    Config,
    ConfigSpec,
    Network,
    NetworkSpec,
    NodeSpec,
    Secret,
    SecretSpec,
    Service,
    ServiceSpec,
)
from shoal.cluster.forward import (
    CONTROL_METHOD,
    ERROR_HEADER,
    FORWARDED_HEADER,
    NOT_LEADER_HEADER,
    Forwarder,
    ForwardRequest,
    ForwardResponse,
)
from shoal.errors import InvalidArgument, ShoalError
from shoal.httpapi.common import daemon_of
from shoal.httpapi.node_api import LeaderRaft, LocalNode
from shoal.manager.controlapi.configs import CONFIGS
from shoal.manager.controlapi.networks import create_network, remove_network
from shoal.manager.controlapi.nodes import update_node
from shoal.manager.controlapi.secrets import (
    SECRETS,
    BlobKind,
    create_blob,
    remove_blob,
    update_blob,
)
from shoal.manager.controlapi.services import create_service, remove_service, update_service
from shoal.manager.raft.errors import NotLeader
from shoal.manager.raft_role import ElectedHere

log = logging.getLogger(__name__)

__all__ = [
    "NETWORK_CREATE",
    "NETWORK_REMOVE",
    "NODE_UPDATE",
    "OPS",
    "SERVICE_CREATE",
    "SERVICE_REMOVE",
    "SERVICE_UPDATE",
    "BlobOps",
    "Op",
    "blob_ops",
    "call",
    "runner",
]

R = TypeVar("R")
Run = Callable[..., Awaitable[Any]]  # (store, raft, *args)


@dataclass(frozen=True)
class Op(Generic[R]):
    """One control API operation: its wire name, the types of its arguments and result."""

    name: str
    args: Any  # a tuple type: how the leader decodes the arguments
    result: Any  # how the follower decodes the answer
    run: Run

    def decode_args(self, raw: bytes) -> tuple[Any, ...]:
        return msgspec.msgpack.decode(raw, type=self.args)  # type: ignore[no-any-return]

    def decode_result(self, raw: bytes) -> R:
        return msgspec.msgpack.decode(raw, type=self.result)  # type: ignore[no-any-return]


OPS: dict[str, Op[Any]] = {}


def _op(name: str, args: Any, result: Any, run: Run) -> Op[Any]:
    op: Op[Any] = Op(name, args, result, run)
    OPS[name] = op
    return op


async def _dropped(result: Awaitable[object]) -> None:
    await result  # the handler needs no result: none travels back


SERVICE_CREATE: Op[Service] = _op(
    "service.create", tuple[ServiceSpec, str], Service,
    lambda store, _raft, spec, auth: create_service(store, spec, registry_auth=auth),
)
SERVICE_UPDATE: Op[None] = _op(
    "service.update", tuple[str, int | None, ServiceSpec, bool, str], None,
    lambda store, _raft, ref, version, spec, rollback, auth: _dropped(update_service(
        store, ref, version, spec, rollback=rollback, registry_auth=auth)),
)
SERVICE_REMOVE: Op[None] = _op(
    "service.remove", tuple[str], None,
    lambda store, _raft, ref: _dropped(remove_service(store, ref)),
)
NETWORK_CREATE: Op[Network] = _op(
    "network.create", tuple[NetworkSpec], Network,
    lambda store, _raft, spec: create_network(store, spec),
)
NETWORK_REMOVE: Op[None] = _op(
    "network.remove", tuple[str], None,
    lambda store, _raft, ref: _dropped(remove_network(store, ref)),
)
NODE_UPDATE: Op[None] = _op(  # a demotion's quorum check is the leader's Raft's
    "node.update", tuple[str, int | None, NodeSpec], None,
    lambda store, raft, ref, version, spec: _dropped(update_node(store, raft, ref, version, spec)),
)


@dataclass(frozen=True)
class BlobOps:
    create: Op[Secret | Config]
    update: Op[None]
    remove: Op[None]


def _blob_ops(kind: BlobKind, spec: type[SecretSpec] | type[ConfigSpec],
              obj: type[Secret] | type[Config]) -> BlobOps:
    return BlobOps(
        _op(f"{kind.kind}.create", tuple[spec], obj,  # type: ignore[valid-type]
            lambda store, _raft, s: create_blob(store, kind, s)),
        _op(f"{kind.kind}.update", tuple[str, int | None, spec], None,  # type: ignore[valid-type]
            lambda store, _raft, ref, version, s: _dropped(
                update_blob(store, kind, ref, version, s))),
        _op(f"{kind.kind}.remove", tuple[str], None,
            lambda store, _raft, ref: _dropped(remove_blob(store, kind, ref))),
    )


_BLOBS = {
    SECRETS.kind: _blob_ops(SECRETS, SecretSpec, Secret),
    CONFIGS.kind: _blob_ops(CONFIGS, ConfigSpec, Config),
}


def blob_ops(kind: BlobKind) -> BlobOps:
    return _BLOBS[kind.kind]


# -- the follower's side: the handler's call --------------------------------------------


async def call(request: web.Request, op: Op[R], *args: Any) -> R:
    """`op(*args)` on the leader's store: here when this manager leads (or knows no
    leader: `NotLeader` then takes the request to the general fallback), else proxied."""
    daemon = daemon_of(request)
    raft = daemon.raft
    if (
        raft is not None
        and raft.leader_id not in (0, raft.id)
        and not request.headers.get(FORWARDED_HEADER)
    ):
        try:
            return await _proxied(raft, op, args)
        except ElectedHere:
            pass  # this manager leads now: run it here
    result: R = await op.run(daemon.require_manager(), raft, *args)
    return result


_encode = msgspec.msgpack.Encoder().encode


async def _proxied(raft: LeaderRaft, op: Op[R], args: tuple[Any, ...]) -> R:
    answer = await raft.forward(ForwardRequest(CONTROL_METHOD, op.name, [], _encode(args)))
    if answer.status == 200:
        try:
            return op.decode_result(answer.body)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise errors.Unavailable(f"the leader's answer to {op.name}: {exc}") from None
    raise _error_of(answer)


# the classes a control call's error travels as (a subclass goes as its nearest one here)
_ERRORS: dict[str, type[ShoalError]] = {
    cls.__name__: cls
    for cls in (errors.InvalidArgument, errors.NotFound, errors.Ambiguous, errors.Conflict,
                errors.OutOfSequence, errors.Unavailable, errors.NotSupported)
}


class LeaderError(ShoalError):
    """An error of the leader's outside the classes above: its status and message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class LeaderFault(Exception):
    """The leader's call failed with an unexpected exception (a bug): answered as a local
    one would be (500, logged)."""


def _error_of(answer: ForwardResponse) -> Exception:
    message = answer.body.decode("utf-8", "replace")
    name = next((v for k, v in answer.headers if k.lower() == ERROR_HEADER.lower()), "")
    if not name:
        return LeaderFault(f"the leader failed: {message}")
    cls = _ERRORS.get(name)
    if cls is not None and cls.status == answer.status:
        return cls(message)
    return LeaderError(answer.status, message)


# -- the leader's side ------------------------------------------------------------------


def runner(daemon: LocalNode) -> Forwarder:
    """Runs a follower's control call on this manager's store (`CONTROL` requests)."""

    async def run(req: ForwardRequest) -> ForwardResponse:
        try:
            op = OPS.get(req.path)
            if op is None:
                raise InvalidArgument(f"unknown control call {req.path[:80]!r}")
            try:
                args = op.decode_args(req.body)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                raise InvalidArgument(f"control call {op.name}: bad arguments: {exc}") from None
            value = await op.run(daemon.require_manager(), daemon.raft, *args)
        except NotLeader as exc:
            return ForwardResponse(503, [(NOT_LEADER_HEADER, "1")], exc.message.encode())
        except ShoalError as exc:
            return ForwardResponse(exc.status, [(ERROR_HEADER, _class_of(exc))],
                                   exc.message.encode())
        except Exception as exc:
            log.exception("control call %s failed", req.path[:80])
            return ForwardResponse(500, [], f"{type(exc).__name__}".encode())
        return ForwardResponse(200, [], _encode(value))

    return run


def _class_of(exc: ShoalError) -> str:
    for cls in type(exc).__mro__:
        if _ERRORS.get(cls.__name__) is cls:
            return cls.__name__
    return type(exc).__name__

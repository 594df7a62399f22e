"""The joining node's side of `swarm join`: pin the CA, prove the token, get a certificate.

Order matters: the manager's root CA is read from the TLS handshake and compared with the
token's digest before anything is sent (CA pinning); only then does the node open a
verified channel and send the token and a CSR for a key made here (the key never leaves
this node). The certificate that comes back is checked against the pinned CA and the key.
Managers are tried in the order given; the first that answers decides.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import logging
from dataclasses import dataclass

from shoal.agent.resources import host_resources
from shoal.ca.certs import make_csr, new_key, verify_node_cert
from shoal.ca.files import NodeTLS
from shoal.ca.root import parse_join_token
from shoal.cluster.client import ClusterClient, fetch_root_ca
from shoal.cluster.wire import JoinRequest, JoinResponse
from shoal.errors import InvalidArgument, Unavailable

__all__ = ["JoinResult", "join_swarm", "manager_address"]

log = logging.getLogger(__name__)

_JOIN_TIMEOUT = 20.0


@dataclass(frozen=True)
class JoinResult:
    tls: NodeTLS
    node_id: str
    subnet: str
    managers: list[str]
    addr: str  # the address this node advertises


def manager_address(value: str) -> str:
    """"ip" or "ip:port" -> "ip:port" (2377 by default)."""
    host, sep, port = value.rpartition(":")
    if not sep:
        host, port = value, "2377"
    try:
        ipaddress.IPv4Address(host)
        number = int(port)
    except ValueError:
        raise InvalidArgument(f"invalid remote address {value!r} (want IP[:PORT])") from None
    if not 0 < number < 65536:
        raise InvalidArgument(f"invalid remote address {value!r} (port out of range)")
    return f"{host}:{number}"


async def join_swarm(
    remotes: list[str],
    token: str,
    hostname: str,
    advertise: str,
    availability: str,
    engine_version: str,
) -> JoinResult:
    """Join through the first manager of `remotes` that answers; `advertise` "" means the
    address this node reaches that manager from."""
    if not remotes:
        raise InvalidArgument("at least 1 RemoteAddr is required to join")
    try:
        digest, _ = parse_join_token(token)
    except ValueError:
        raise InvalidArgument("invalid join token") from None
    failures: list[str] = []
    for remote in [manager_address(r) for r in remotes]:
        try:
            return await _join_one(remote, digest, token, hostname, advertise, availability,
                                   engine_version)
        except Unavailable as exc:
            log.warning("join: manager %s: %s", remote, exc.message)
            failures.append(exc.message)
    raise Unavailable("could not join the swarm: " + "; ".join(failures))


async def _join_one(
    remote: str,
    digest: str,
    token: str,
    hostname: str,
    advertise: str,
    availability: str,
    engine_version: str,
) -> JoinResult:
    ca_pem, local_ip = await fetch_root_ca(remote, digest)
    addr = advertise or local_ip
    key = new_key()
    client = ClusterClient(remote, ca_pem, None)
    try:
        request = JoinRequest(token, make_csr(key), hostname, addr, availability, engine_version,
                              host_resources())
        response = await client.call("CA/Join", request, JoinResponse, timeout=_JOIN_TIMEOUT)
    finally:
        await asyncio.shield(client.close())
    identity = verify_node_cert(ca_pem, response.cert, datetime.datetime.now(datetime.UTC))
    if identity.node_id != response.node_id:
        raise InvalidArgument("the manager issued a certificate for another node")
    log.info("join: joined through %s as node %s (%s)", remote, identity.node_id, identity.role)
    return JoinResult(
        NodeTLS(ca_pem, response.cert, key),
        response.node_id,
        response.subnet,
        response.managers or [remote],
        addr,
    )

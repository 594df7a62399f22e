"""A node's TLS material on disk, under `<data root>/certificates/`.

    swarm-root-ca.crt   the cluster's root CA certificate (every node)
    swarm-root-ca.key   its key (managers only, until the CA key moves into the store)
    swarm-node.crt      this node's certificate (+ the root CA, as a chain)
    swarm-node.key      this node's private key (0600, never leaves the node)

Writes are atomic (temporary file + rename), so a crash during a renewal leaves either the
old or the new certificate, never half of one. The key and certificate are written key
first: a certificate is only ever next to the key it was issued for, because a renewal
keeps the key of the CSR it sent until the certificate for it arrives.
"""

from __future__ import annotations

import os
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path

from shoal.ca.certs import NodeIdentity, identity_of
from shoal.ca.root import RootCA

__all__ = [
    "NodeTLS",
    "load_identity",
    "load_node_tls",
    "load_root_ca",
    "save_node_tls",
    "save_root_ca",
]

_CA = "swarm-root-ca.crt"
_CA_KEY = "swarm-root-ca.key"
_CERT = "swarm-node.crt"
_KEY = "swarm-node.key"


@dataclass(frozen=True)
class NodeTLS:
    """What a node needs for mutual TLS on 2377."""

    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes

    @property
    def identity(self) -> NodeIdentity:
        return identity_of(self.cert_pem)

    @property
    def chain_pem(self) -> bytes:
        """The node certificate followed by the root CA (what a server presents)."""
        return self.cert_pem.rstrip(b"\n") + b"\n" + self.ca_pem


def _write(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save_node_tls(directory: Path, tls: NodeTLS) -> None:
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    _write(directory / _CA, tls.ca_pem, 0o644)
    _write(directory / _KEY, tls.key_pem, 0o600)
    _write(directory / _CERT, tls.cert_pem, 0o644)


def load_node_tls(directory: Path) -> NodeTLS | None:
    try:
        return NodeTLS(
            (directory / _CA).read_bytes(),
            (directory / _CERT).read_bytes(),
            (directory / _KEY).read_bytes(),
        )
    except FileNotFoundError:
        return None


def save_root_ca(directory: Path, ca: RootCA) -> None:
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    _write(directory / _CA, ca.cert_pem, 0o644)
    _write(directory / _CA_KEY, ca.key_pem, 0o600)


def load_root_ca(directory: Path) -> RootCA | None:
    try:
        return RootCA((directory / _CA).read_bytes(), (directory / _CA_KEY).read_bytes())
    except FileNotFoundError:
        return None


def load_identity(ctx: ssl.SSLContext, tls: NodeTLS) -> None:
    """(Re)load this node's certificate chain and key into `ctx` (a server's or a client's);
    later handshakes use the new ones. ssl loads a chain only from files: they are written
    to a private temporary directory for the call."""
    with tempfile.TemporaryDirectory(prefix="shoal-tls-") as tmp:
        cert, key = Path(tmp) / "chain.pem", Path(tmp) / "key.pem"
        cert.write_bytes(tls.chain_pem)
        key.touch(mode=0o600)
        key.write_bytes(tls.key_pem)
        ctx.load_cert_chain(cert, key)

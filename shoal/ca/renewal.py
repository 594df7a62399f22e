"""Renewing this node's certificate before it expires, without a restart.

A new key and CSR are made on the node and sent to a manager (`renew`); the certificate
that comes back is checked against the key and the root CA before it replaces the old one
(`save`). Renewal starts when 50-80 % of the certificate's lifetime has passed (a random
point, drawn from the injected rng, so a swarm's nodes do not all renew at once, as in
swarmkit); a failed attempt is retried with a growing pause. Connections already open keep
the certificate they were made with; the next ones present the new certificate.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import random
from collections.abc import Awaitable, Callable

from shoal.ca.certs import make_csr, new_key, not_after, validity, verify_node_cert
from shoal.ca.files import NodeTLS
from shoal.errors import InvalidArgument, ShoalError

__all__ = ["CertRenewer", "renew_at"]

log = logging.getLogger(__name__)

Clock = Callable[[], datetime.datetime]


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def renew_at(cert_pem: bytes, fraction: float) -> datetime.datetime:
    """When `fraction` of the certificate's validity has passed."""
    start, end = validity(cert_pem)
    return start + (end - start) * fraction


def _same_key(cert_pem: bytes, key_pem: bytes) -> bool:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    cert_key = x509.load_pem_x509_certificate(cert_pem).public_key()
    key = serialization.load_pem_private_key(key_pem, password=None)
    fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return cert_key.public_bytes(*fmt) == key.public_key().public_bytes(*fmt)


class CertRenewer:
    def __init__(
        self,
        current: Callable[[], NodeTLS],
        renew: Callable[[bytes], Awaitable[bytes]],
        save: Callable[[NodeTLS], None],
        rng: random.Random,
        clock: Clock = _utcnow,
    ) -> None:
        self._current = current
        self._renew = renew
        self._save = save
        self._rng = rng
        self._clock = clock
        self.renewals = 0

    async def renew_once(self) -> NodeTLS:
        tls = self._current()
        key = new_key()
        cert = await self._renew(make_csr(key))
        identity = verify_node_cert(tls.ca_pem, cert, self._clock())
        if not _same_key(cert, key):
            raise InvalidArgument("renewed certificate is not for the key this node sent")
        if identity.node_id != tls.identity.node_id:
            raise InvalidArgument("renewed certificate is for another node")
        fresh = NodeTLS(tls.ca_pem, cert, key)
        self._save(fresh)
        self.renewals += 1
        log.info(
            "ca: certificate of node %s renewed (%s), valid until %s",
            identity.node_id,
            identity.role,
            not_after(cert).isoformat(),
        )
        return fresh

    async def run(self) -> None:
        pause = 1.0
        fraction = self._rng.uniform(0.5, 0.8)
        while True:
            due = renew_at(self._current().cert_pem, fraction)
            wait = (due - self._clock()).total_seconds()
            if wait > 0:
                # re-read at least every minute: the certificate may be replaced meanwhile
                await asyncio.sleep(min(wait, 60.0))
                continue
            try:
                await self.renew_once()
                pause = 1.0
                fraction = self._rng.uniform(0.5, 0.8)
            except ShoalError as exc:
                log.warning("ca: certificate renewal failed (retrying in %.0fs): %s", pause, exc)
                await asyncio.sleep(pause)
                pause = min(pause * 2, 30.0)

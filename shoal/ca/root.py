"""The cluster's root CA: generated at `swarm init`, its digest pinned by join tokens.

`cryptography` is imported by `RootCA.generate` only (`swarm init`); the digest is the
SHA-256 of the certificate's DER, read without it (see `der.py`)."""

from __future__ import annotations

import datetime
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from shoal.ca import der

__all__ = ["RootCA", "ca_digest", "join_token", "parse_join_token", "token_matches"]

_B36 = "0123456789abcdefghijklmnopqrstuvwxyz"


def _base36(data: bytes, width: int) -> str:
    n = int.from_bytes(data, "big")
    out = ""
    while n:
        n, r = divmod(n, 36)
        out = _B36[r] + out
    return out.rjust(width, "0")


@dataclass(frozen=True)
class RootCA:
    cert_pem: bytes
    key_pem: bytes

    @classmethod
    def generate(cls, cluster_id: str, years: int = 20) -> RootCA:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "swarm-ca")])
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=365 * years))
            .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
            .sign(key, hashes.SHA256())
        )
        return cls(
            cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        )

    def digest(self) -> str:
        return ca_digest(self.cert_pem)


def ca_digest(cert_pem: bytes) -> str:
    """The digest a join token pins: SHA-256 of the CA certificate (DER), base 36."""
    raw = der.pem_to_der(cert_pem)
    der.parse_certificate(raw)  # ValueError if it is not a certificate
    return _base36(hashlib.sha256(raw).digest(), 50)


def join_token(ca: RootCA) -> str:
    return f"SWMTKN-1-{ca.digest()}-{_base36(secrets.token_bytes(16), 25)}"


def token_matches(given: str, expected: str) -> bool:
    """Constant-time comparison of a presented token with a valid one."""
    return bool(expected) and hmac.compare_digest(given.encode(), expected.encode())


def parse_join_token(token: str) -> tuple[str, str]:
    """(CA digest, secret) of a token; ValueError if it is not a swarm join token."""
    parts = token.split("-")
    if len(parts) != 4 or parts[0] != "SWMTKN" or parts[1] != "1":
        raise ValueError("invalid join token")
    if len(parts[2]) != 50 or len(parts[3]) != 25:
        raise ValueError("invalid join token")
    return parts[2], parts[3]

"""Node certificates: keys and CSRs made on the node, signed by the cluster's root CA.

A node certificate says who the node is and what it may do: the node ID in the subject's
CN, the role in its OU (`swarm-worker` / `swarm-manager`, as swarmkit writes them), the
cluster ID in its O. The same strings are DNS SANs, so a client that dials a manager checks
the server name `swarm-manager` and a worker's certificate cannot pose as a manager.
The private key is generated where it is used and never leaves that node: the manager only
sees a CSR. Pure functions of their arguments (time is passed in); no file or network I/O.

`cryptography` is imported inside the functions that make keys, CSRs and certificates or
check signatures (join, renewal, role change; signing on a manager): what runs all the time,
`identity_of` and `not_after`, reads the certificate's DER itself (`der.py`), so that an
idle node does not carry the x509 modules.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from shoal.ca import der
from shoal.errors import InvalidArgument

if TYPE_CHECKING:
    from shoal.ca.root import RootCA

__all__ = [
    "MANAGER_OU",
    "MANAGER_SERVER_NAME",
    "WORKER_OU",
    "NodeIdentity",
    "Role",
    "identity_of",
    "make_csr",
    "new_key",
    "not_after",
    "role_of_ou",
    "sign_node_csr",
    "validity",
    "verify_node_cert",
]

Role = Literal["worker", "manager"]
WORKER_OU = "swarm-worker"
MANAGER_OU = "swarm-manager"
MANAGER_SERVER_NAME = MANAGER_OU  # what clients check a manager's certificate against
_OU = {"worker": WORKER_OU, "manager": MANAGER_OU}


@dataclass(frozen=True)
class NodeIdentity:
    """Who a verified certificate speaks for."""

    node_id: str
    role: Role
    cluster_id: str


def role_of_ou(ou: str) -> Role:
    if ou == WORKER_OU:
        return "worker"
    if ou == MANAGER_OU:
        return "manager"
    raise InvalidArgument(f"certificate has no swarm role (OU {ou!r})")


def new_key() -> bytes:
    """A fresh P-256 private key, PEM (PKCS#8)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def make_csr(key_pem: bytes) -> bytes:
    """A CSR for `key_pem`. Its subject is a placeholder: the CA decides ID and role."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = serialization.load_pem_private_key(key_pem, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "swarm-node")]))
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM)


def sign_node_csr(
    ca: RootCA,
    csr_pem: bytes,
    node_id: str,
    role: Role,
    cluster_id: str,
    expiry: datetime.timedelta,
    now: datetime.datetime,
) -> bytes:
    """The node certificate for the CSR's public key, valid from `now` for `expiry`."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    try:
        csr = x509.load_pem_x509_csr(csr_pem)
    except ValueError as exc:
        raise InvalidArgument(f"invalid certificate signing request: {exc}") from None
    if not csr.is_signature_valid:
        raise InvalidArgument("certificate signing request signature is invalid")
    if not isinstance(csr.public_key(), ec.EllipticCurvePublicKey):
        raise InvalidArgument("certificate signing request must carry an EC P-256 key")
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem)
    ca_key = serialization.load_pem_private_key(ca.key_pem, password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, cluster_id),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, _OU[role]),
            x509.NameAttribute(NameOID.COMMON_NAME, node_id),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(csr.public_key())
        .serial_number(x509.random_serial_number())
        # a little slack for clocks that disagree by a few minutes
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + expiry)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(_OU[role]), x509.DNSName(node_id)]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def identity_of(cert: bytes) -> NodeIdentity:
    """The identity a node certificate (PEM or DER) states. Does NOT verify it."""
    parsed = der.parse_certificate(der.pem_to_der(cert) if cert.startswith(b"-----") else cert)

    def one(oid: bytes) -> str:
        values = parsed.attributes(oid)
        if len(values) != 1:
            raise InvalidArgument("certificate is not a swarm node certificate")
        return values[0]

    return NodeIdentity(
        node_id=one(der.COMMON_NAME),
        role=role_of_ou(one(der.ORGANIZATIONAL_UNIT_NAME)),
        cluster_id=one(der.ORGANIZATION_NAME),
    )


def validity(cert_pem: bytes) -> tuple[datetime.datetime, datetime.datetime]:
    """(not before, not after) of a PEM certificate, aware UTC datetimes."""
    parsed = der.parse_certificate(der.pem_to_der(cert_pem))
    return parsed.not_before, parsed.not_after


def not_after(cert_pem: bytes) -> datetime.datetime:
    return validity(cert_pem)[1]


def verify_node_cert(ca_cert_pem: bytes, cert_pem: bytes, now: datetime.datetime) -> NodeIdentity:
    """Check that `cert_pem` was signed by the CA and is valid at `now`; its identity."""
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric import ec

    ca_cert = x509.load_pem_x509_certificate(ca_cert_pem)
    cert = x509.load_pem_x509_certificate(cert_pem)
    public = ca_cert.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    algorithm = cert.signature_hash_algorithm
    if algorithm is None:
        raise InvalidArgument("certificate has no signature hash algorithm")
    try:
        public.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(algorithm))
    except InvalidSignature:
        raise InvalidArgument("certificate is not signed by this swarm's root CA") from None
    if cert.issuer != ca_cert.subject:
        raise InvalidArgument("certificate is not issued by this swarm's root CA")
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise InvalidArgument("certificate is expired or not yet valid")
    return identity_of(cert_pem)

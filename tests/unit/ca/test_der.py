"""`ca/der.py` reads what `cryptography` reads from the certificates shoal makes (and a few
it does not make), and the idle paths of `shoal.ca` do not import `cryptography`."""

from __future__ import annotations

import datetime
import subprocess
import sys

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import NameOID

from shoal.ca import der
from shoal.ca.certs import identity_of, make_csr, new_key, not_after, sign_node_csr, validity
from shoal.ca.files import NodeTLS
from shoal.ca.renewal import renew_at
from shoal.ca.root import RootCA, ca_digest
from shoal.errors import InvalidArgument

NOW = datetime.datetime(2026, 1, 1, 12, 30, 5, tzinfo=datetime.UTC)


def _cert(name: x509.Name, before: datetime.datetime, after: datetime.datetime) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(before).not_valid_after(after).sign(key, hashes.SHA256())
    )  # fmt: skip
    return cert.public_bytes(serialization.Encoding.PEM)


def test_identity_validity_and_digest_match_cryptography() -> None:
    ca = RootCA.generate("c1", years=40)  # not after 2066: a GeneralizedTime
    cert = sign_node_csr(ca, make_csr(new_key()), "n1", "manager", "c1",
                         datetime.timedelta(days=90), NOW)  # fmt: skip
    for pem in (cert, ca.cert_pem):
        parsed = x509.load_pem_x509_certificate(pem)
        assert validity(pem) == (parsed.not_valid_before_utc, parsed.not_valid_after_utc)
        assert not_after(pem) == parsed.not_valid_after_utc
    assert validity(cert)[0] == NOW - datetime.timedelta(minutes=5)
    assert not_after(ca.cert_pem).year >= 2066
    der_bytes = x509.load_pem_x509_certificate(cert).public_bytes(serialization.Encoding.DER)
    assert identity_of(cert) == identity_of(der_bytes)
    assert (identity_of(cert).node_id, identity_of(cert).role) == ("n1", "manager")
    # the digest a join token pins: SHA-256 of the DER, the chain's first certificate
    tls = NodeTLS(ca.cert_pem, cert, b"")
    assert ca_digest(tls.chain_pem) == ca_digest(cert) != ca_digest(ca.cert_pem)
    start, end = validity(cert)
    assert renew_at(cert, 0.5) == start + (end - start) / 2


def test_names_of_other_string_types_and_multi_valued_rdns() -> None:
    name = x509.Name([
        x509.RelativeDistinguishedName([
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "clüster", _ASN1Type.BMPString),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "swarm-worker",
                               _ASN1Type.PrintableString),
        ]),
        x509.RelativeDistinguishedName([
            x509.NameAttribute(NameOID.COMMON_NAME, "nöde", _ASN1Type.UTF8String)]),
    ])  # fmt: skip
    pem = _cert(name, NOW, NOW + datetime.timedelta(days=1))
    who = identity_of(pem)
    assert (who.node_id, who.role, who.cluster_id) == ("nöde", "worker", "clüster")
    twice = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "a"),
                       x509.NameAttribute(NameOID.COMMON_NAME, "b"),
                       x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "swarm-worker"),
                       x509.NameAttribute(NameOID.ORGANIZATION_NAME, "c")])  # fmt: skip
    with pytest.raises(InvalidArgument, match="not a swarm node certificate"):
        identity_of(_cert(twice, NOW, NOW + datetime.timedelta(days=1)))
    with pytest.raises(InvalidArgument, match="no swarm role"):
        identity_of(_cert(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "a"),
                                     x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "x"),
                                     x509.NameAttribute(NameOID.ORGANIZATION_NAME, "c")]),
                          NOW, NOW + datetime.timedelta(days=1)))  # fmt: skip


def test_garbage_raises_value_error_like_cryptography() -> None:
    pem = RootCA.generate("c").cert_pem
    raw = der.pem_to_der(pem)
    for bad in (b"", b"\x30\x03\x02\x01", raw[:-1], raw + b"\x00", b"\x04\x00"):
        with pytest.raises(ValueError):
            der.parse_certificate(bad)
        with pytest.raises(ValueError):
            x509.load_der_x509_certificate(bad)
    for bad_pem in (b"garbage", pem.replace(b"MII", b"M!I", 1)):
        with pytest.raises(ValueError):
            ca_digest(bad_pem)
        with pytest.raises(ValueError):
            identity_of(b"-----" + bad_pem)


def test_the_idle_paths_do_not_import_cryptography_or_pyroute2() -> None:
    code = (
        "import sys, shoal.ca.certs, shoal.ca.files, shoal.ca.renewal, shoal.ca.root;"
        "import shoal.mesh.overlay.netlink, shoal.agent.svcnet.apply, shoal.mesh.kernel;"
        "import shoal.node.addresses, shoal.agent.exec.netsetup;"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'cryptography', 'pyroute2'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60)  # fmt: skip
    assert out.stdout.strip() == "[]"

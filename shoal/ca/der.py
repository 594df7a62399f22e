"""The few fields of an X.509 certificate that a running node reads, without `cryptography`.

A node reads its peers' identities (subject CN, OU, O) and its own certificate's validity
(the renewal schedule) all the time; it makes keys, CSRs and checks signatures only when
it joins, renews or changes role, and a manager signs only then. `cryptography`'s x509
modules cost ~2 MiB of every daemon's RSS (its Rust core, ~8.6 MiB, is loaded anyway by
gossip's AES-GCM), so `certs.py` imports them in the functions that need them, and what
runs all the time reads the DER here: a certificate is
`SEQUENCE { tbs SEQUENCE { [0] version, serial, signature, issuer, validity, subject, ... }, ... }`.

Nothing here verifies anything: a peer certificate is read after the TLS handshake verified
it, a node's own after `certs.verify_node_cert` did. Malformed input raises ValueError, as
`cryptography`'s loaders do.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import re
from dataclasses import dataclass

__all__ = ["Certificate", "parse_certificate", "pem_to_der"]

_PEM = re.compile(rb"-----BEGIN CERTIFICATE-----\r?\n(.*?)-----END CERTIFICATE-----", re.S)
_SEQUENCE = 0x30
_SET = 0x31
_OID = 0x06
_INTEGER = 0x02
_UTC_TIME = 0x17
_GENERALIZED_TIME = 0x18
_VERSION = 0xA0  # [0] EXPLICIT
# the string types an attribute value may have, and how their bytes read
_STRINGS = {
    0x0C: "utf-8",  # UTF8String
    0x13: "ascii",  # PrintableString
    0x16: "ascii",  # IA5String
    0x14: "latin-1",  # TeletexString
    0x1E: "utf-16-be",  # BMPString
    0x1C: "utf-32-be",  # UniversalString
}
# the DER contents of the OIDs read (2.5.4.x)
COMMON_NAME = bytes([0x55, 0x04, 0x03])
ORGANIZATION_NAME = bytes([0x55, 0x04, 0x0A])
ORGANIZATIONAL_UNIT_NAME = bytes([0x55, 0x04, 0x0B])


@dataclass(frozen=True)
class Certificate:
    subject: tuple[tuple[bytes, str], ...]  # (OID contents, value) in order, every RDN
    not_before: datetime.datetime  # aware, UTC
    not_after: datetime.datetime

    def attributes(self, oid: bytes) -> list[str]:
        return [value for kind, value in self.subject if kind == oid]


def pem_to_der(pem: bytes) -> bytes:
    """The DER of the first certificate in `pem`."""
    match = _PEM.search(pem)
    if match is None:
        raise ValueError("no PEM certificate found")
    try:
        return base64.b64decode(b"".join(match.group(1).split()), validate=True)
    except binascii.Error as exc:
        raise ValueError(f"invalid PEM certificate: {exc}") from None


def parse_certificate(der: bytes) -> Certificate:
    tag, start, end = _tlv(der, 0)
    if tag != _SEQUENCE or end != len(der):
        raise ValueError("not a DER certificate")
    tag, offset, tbs_end = _tlv(der, start)
    if tag != _SEQUENCE:
        raise ValueError("certificate without a tbsCertificate")
    fields: list[tuple[int, int, int]] = []
    while offset < tbs_end and len(fields) < 6:
        tag, value, after = _tlv(der, offset)
        fields.append((tag, value, after))
        offset = after
    if fields and fields[0][0] == _VERSION:
        fields.pop(0)
    if len(fields) < 5 or fields[0][0] != _INTEGER:
        raise ValueError("truncated tbsCertificate")
    (_, validity, validity_end), (_, subject, subject_end) = fields[3], fields[4]
    tag, before_start, before_end = _tlv(der, validity)
    not_before = _time(tag, der[before_start:before_end])
    tag, after_start, after_end = _tlv(der, before_end)
    not_after = _time(tag, der[after_start:after_end])
    if after_end != validity_end:
        raise ValueError("malformed validity")
    return Certificate(_name(der, subject, subject_end), not_before, not_after)


def _tlv(data: bytes, offset: int) -> tuple[int, int, int]:
    """(tag, start of the contents, end of the contents) of the element at `offset`."""
    if offset + 2 > len(data):
        raise ValueError("truncated DER")
    tag, length = data[offset], data[offset + 1]
    offset += 2
    if length & 0x80:
        count = length & 0x7F
        if not 0 < count <= 4 or offset + count > len(data):
            raise ValueError("bad DER length")
        length = int.from_bytes(data[offset : offset + count], "big")
        offset += count
    if offset + length > len(data):
        raise ValueError("truncated DER")
    return tag, offset, offset + length


def _name(der: bytes, offset: int, end: int) -> tuple[tuple[bytes, str], ...]:
    """Name ::= SEQUENCE OF SET OF SEQUENCE { type OID, value ANY }."""
    found = []
    while offset < end:
        tag, rdn, rdn_end = _tlv(der, offset)
        if tag != _SET:
            raise ValueError("malformed name")
        while rdn < rdn_end:
            tag, pair, pair_end = _tlv(der, rdn)
            tag_oid, oid_start, oid_end = _tlv(der, pair)
            tag_value, value_start, value_end = _tlv(der, oid_end)
            if tag != _SEQUENCE or tag_oid != _OID or value_end != pair_end:
                raise ValueError("malformed name attribute")
            raw = der[value_start:value_end]
            encoding = _STRINGS.get(tag_value, "utf-8")
            try:
                value = raw.decode(encoding)
            except UnicodeDecodeError as exc:
                raise ValueError(f"malformed name attribute: {exc}") from None
            found.append((der[oid_start:oid_end], value))
            rdn = pair_end
        offset = rdn_end
    return tuple(found)


def _time(tag: int, raw: bytes) -> datetime.datetime:
    """UTCTime (YYMMDDHHMMSSZ, years 1950-2049) or GeneralizedTime (YYYYMMDDHHMMSSZ)."""
    text = raw.decode("ascii", errors="replace")
    if tag == _UTC_TIME and len(text) == 13 and text.endswith("Z"):
        year = int(text[:2])
        text = f"{2000 + year if year < 50 else 1900 + year}{text[2:]}"
    elif tag != _GENERALIZED_TIME or len(text) != 15 or not text.endswith("Z"):
        raise ValueError(f"unsupported certificate time {text!r}")
    parsed = datetime.datetime.strptime(text[:-1], "%Y%m%d%H%M%S")
    return parsed.replace(tzinfo=datetime.UTC)

"""PROXY protocol v2 codec: round trips (hypothesis), the spec's own bytes, and refusals."""

from __future__ import annotations

import ast
import struct
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shoal.mesh import proxyv2
from shoal.mesh.proxyv2 import (
    SIGNATURE,
    ProxyHeader,
    ProxyProtocolError,
    encode,
    header_for,
    parse,
)

ports = st.integers(0, 65535)
v4 = st.ip_addresses(v=4).map(str)
v6 = st.ip_addresses(v=6).map(str)
tlvs = st.lists(st.tuples(st.integers(0, 255), st.binary(max_size=40)), max_size=4).map(tuple)


@st.composite
def headers(draw: st.DrawFn) -> ProxyHeader:
    command = draw(st.sampled_from(["local", "proxy"]))
    family = draw(st.sampled_from(["unspec", "inet", "inet6"]))
    if family == "unspec":
        return ProxyHeader(command, "unspec", "unspec", None, None)
    addr = v4 if family == "inet" else v6
    return ProxyHeader(
        command, family, draw(st.sampled_from(["tcp", "udp"])),
        (draw(addr), draw(ports)), (draw(addr), draw(ports)), draw(tlvs),
    )


@given(headers(), st.binary(max_size=64))
def test_round_trip_and_payload_untouched(header: ProxyHeader, payload: bytes) -> None:
    wire = encode(header)
    found = parse(wire + payload)
    assert found == (header, len(wire))
    assert (wire + payload)[found[1]:] == payload


@given(headers())
def test_every_proper_prefix_asks_for_more(header: ProxyHeader) -> None:
    wire = encode(header)
    for cut in range(len(wire)):
        assert parse(wire[:cut]) is None


def test_known_bytes_tcp4() -> None:
    wire = header_for("tcp", ("198.18.0.2", 40000), ("198.18.0.11", 8080))
    assert wire == (SIGNATURE + b"\x21\x11\x00\x0c" + bytes([198, 18, 0, 2, 198, 18, 0, 11])
                    + struct.pack("!HH", 40000, 8080))
    udp = header_for("udp", ("::1", 1), ("::2", 2))
    assert udp[12:14] == b"\x21\x22" and len(udp) == 16 + 36


def test_local_with_unspec_family() -> None:
    wire = SIGNATURE + b"\x20\x00\x00\x03abc"  # LOCAL, UNSPEC, 3 opaque bytes: skipped
    assert parse(wire + b"GET") == (ProxyHeader("local", "unspec", "unspec", None, None), 19)


GOOD = header_for("tcp", ("10.0.0.1", 1), ("10.0.0.2", 2))


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"GET / HTTP/1.1\r\n\r\n", "signature"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n", "signature"),  # v1 is not accepted
        (b"\r\n\r\n\x00\r\nQUIX", "signature"),
        (SIGNATURE + b"\x11\x11\x00\x0c" + bytes(12), "version"),
        (SIGNATURE + b"\x22\x11\x00\x0c" + bytes(12), "command"),
        (SIGNATURE + b"\x21\x31\x00\xd8" + bytes(216), "family"),  # UNIX: refused
        (SIGNATURE + b"\x21\x13\x00\x0c" + bytes(12), "family"),
        (SIGNATURE + b"\x21\x10\x00\x0c" + bytes(12), "family"),
        (SIGNATURE + b"\x21\x11\x00\x08" + bytes(8), "cannot hold"),
        (SIGNATURE + b"\x21\x21\x00\x0c" + bytes(12), "cannot hold"),
        (SIGNATURE + b"\x21\x11\x00\x0e" + bytes(14), "truncated TLV"),
        (SIGNATURE + b"\x21\x11\x00\x10" + bytes(12) + b"\x01\x00\x05\x00", "overruns"),
    ],
)
def test_malformed_headers_are_refused(data: bytes, why: str) -> None:
    with pytest.raises(ProxyProtocolError, match=why):
        parse(data)


@given(st.binary(min_size=1, max_size=40))
def test_garbage_never_passes_for_a_header(data: bytes) -> None:
    if SIGNATURE.startswith(data[:12]):
        return
    with pytest.raises(ProxyProtocolError):
        parse(data)


def test_encode_refuses_what_it_cannot_express() -> None:
    for header in [
        ProxyHeader("proxy", "inet", "tcp", ("::1", 1), ("::1", 2)),
        ProxyHeader("proxy", "inet", "tcp", ("1.2.3.4", 70000), ("1.2.3.4", 2)),
        ProxyHeader("proxy", "inet", "tcp", None, None),
        ProxyHeader("proxy", "inet", "unspec", ("1.2.3.4", 1), ("1.2.3.4", 2)),
        ProxyHeader("proxy", "unspec", "unspec", ("1.2.3.4", 1), None),
        ProxyHeader("proxy", "inet", "tcp", ("nope", 1), ("1.2.3.4", 2)),
    ]:
        with pytest.raises(ProxyProtocolError):
            encode(header)
    assert parse(GOOD) is not None


def test_the_codec_is_pure() -> None:
    tree = ast.parse(Path(proxyv2.__file__).read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    assert not names & {"asyncio", "socket", "time", "random", "os", "subprocess"}

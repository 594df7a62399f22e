"""`shoal.rtnl`: attribute encoding and decoding, and read-only requests (any network
namespace has `lo`, link 1, holding 127.0.0.1/8)."""

from __future__ import annotations

import errno
import ipaddress
import socket

import pytest

from shoal.rtnl import (
    IFINFOMSG,
    IFLA_IFNAME,
    IFLA_INFO_DATA,
    IFLA_INFO_KIND,
    IFLA_LINKINFO,
    LO_INDEX,
    RTM_GETLINK,
    NetlinkError,
    Rtnl,
    attr,
    ipv4_addresses,
    ipv4_addresses_blocking,
    link_msg,
    mac_bytes,
    mac_text,
    parse_attrs,
    text,
    u32,
)


def test_attributes_are_padded_and_read_back_nested() -> None:
    vni = attr(1, (4096).to_bytes(4, "little"))
    inner = attr(IFLA_INFO_KIND, b"vxlan\0") + attr(IFLA_INFO_DATA, vni)
    raw = attr(IFLA_IFNAME, b"eth0\0") + attr(IFLA_LINKINFO, inner)
    assert len(raw) % 4 == 0 and raw[:4] == b"\x09\x00\x03\x00"  # length 9, type 3
    top = parse_attrs(raw)
    assert text(top[IFLA_IFNAME]) == "eth0"
    info = parse_attrs(top[IFLA_LINKINFO])
    assert text(info[IFLA_INFO_KIND]) == "vxlan"
    assert u32(parse_attrs(info[IFLA_INFO_DATA])[1]) == 4096
    # NLA_F_NESTED is not part of the type; a truncated attribute ends the list
    assert parse_attrs(b"\x08\x00\x12\x80abcd" + b"\x08\x00\x01\x00ab") == {0x12: b"abcd"}


def test_mac_text_and_bytes() -> None:
    assert mac_text(b"\x02\x42\x0a\x00\x00\xff") == "02:42:0a:00:00:ff"
    assert mac_bytes("02:42:0A:00:00:FF") == b"\x02\x42\x0a\x00\x00\xff"


def test_index_of_lo_none_for_a_missing_link_and_erange_for_a_long_name() -> None:
    with Rtnl() as nl:
        assert nl.index("lo") == socket.if_nametoindex("lo") == LO_INDEX
        assert nl.index("shoal-nolink0") is None
        with pytest.raises(NetlinkError) as err:
            nl.index("x" * 16)
        assert err.value.code == errno.ERANGE


async def test_get_a_link_by_index_and_an_error_for_a_missing_one() -> None:
    with Rtnl() as nl:
        fields, attrs = await nl.get(RTM_GETLINK, link_msg(LO_INDEX), IFINFOMSG)
        index = fields[2]
        assert index == LO_INDEX and text(attrs[IFLA_IFNAME]) == "lo"
        with pytest.raises(NetlinkError) as err:
            await nl.get(RTM_GETLINK, link_msg(0x7FFFFFF0), IFINFOMSG)
        assert err.value.code == errno.ENODEV and err.value.args == (19, "No such device")


async def test_dumps_see_every_link_and_address() -> None:
    lo = ipaddress.IPv4Interface("127.0.0.1/8")
    with Rtnl() as nl:
        links = await nl.dump(RTM_GETLINK, link_msg(), IFINFOMSG)
        names = {text(attrs.get(IFLA_IFNAME)): fields[2] for fields, attrs in links}
        assert names["lo"] == LO_INDEX and len(names) == len(socket.if_nameindex())
        assert (LO_INDEX, lo) in await ipv4_addresses(nl)
        assert (LO_INDEX, lo) in ipv4_addresses_blocking(nl)  # the same socket again

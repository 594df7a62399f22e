"""conntrack deletions through netlink (pyroute2), instead of a `conntrack` process.

Takes the deletions `plan.conntrack_flushes` gives as conntrack(8) argument lists (the
program stays the fallback, and the lists stay what the tests read) with one filtered dump
per deletion and a delete per entry found: the kernel filters on the original protocol and
destination port and, when given, the reply source address and port (CTA_FILTER, Linux
>= 5.8); `--state SYN_SENT` asks it for flows that have seen no reply (CTA_STATUS filter,
>= 5.15). All of it is checked again here (and the TCP state is SYN_SENT). An entry gone in
between (ENOENT) is not an error; nothing matched is the common case. Any other failure
raises (OSError or pyroute2's NetlinkError): the caller falls back to the program.

pyroute2 is imported by the first deletion, not with this module: its package import costs
8-10 MiB of RSS, which a daemon that never deletes a flow (an idle one) does not carry
(docs/design/exec-runtime.md, "Session 11"). Once imported it stays.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyroute2.netlink.nfnetlink.nfctsocket import nfct_msg

__all__ = ["MAX_DELETIONS", "Deletion", "delete", "dumps", "parse"]

_PROTOS = {"tcp": socket.IPPROTO_TCP, "udp": socket.IPPROTO_UDP}
_SEEN_REPLY = 1 << 1  # IPS_SEEN_REPLY
_SYN_SENT = 1  # TCP_CONNTRACK_SYN_SENT
MAX_DELETIONS = 4  # dumps per apply over netlink; more go to the program (see `delete`)


@dataclass(frozen=True)
class Deletion:
    """One `conntrack -D` of `conntrack_flushes`."""

    proto: int
    orig_port_dst: int
    syn_sent: bool = False
    reply_src: str | None = None
    reply_port_src: int | None = None


def parse(args: Sequence[str]) -> Deletion:
    """The `Deletion` of one argument list; ValueError for anything else."""
    if not args or args[0] != "-D":
        raise ValueError(f"not a conntrack deletion: {args!r}")
    opts: dict[str, str] = {}
    rest = list(args[1:])
    while rest:
        flag = rest.pop(0)
        if flag not in ("-p", "--state", "--orig-port-dst", "--reply-src", "--reply-port-src"):
            raise ValueError(f"conntrack flag {flag!r} is not handled over netlink")
        if not rest:
            raise ValueError(f"conntrack flag {flag!r} without a value")
        opts[flag] = rest.pop(0)
    if opts.get("-p") not in _PROTOS or "--orig-port-dst" not in opts:
        raise ValueError(f"conntrack deletion needs -p tcp|udp and --orig-port-dst: {args!r}")
    state = opts.get("--state")
    if state not in (None, "SYN_SENT"):
        raise ValueError(f"conntrack state {state!r} is not handled over netlink")
    reply_port = opts.get("--reply-port-src")
    return Deletion(_PROTOS[opts["-p"]], int(opts["--orig-port-dst"]), state == "SYN_SENT",
                    opts.get("--reply-src"), int(reply_port) if reply_port else None)


def _request(d: Deletion) -> nfct_msg:
    """The dump of `d`'s entries, filtered in the kernel as far as it can."""
    from pyroute2.netlink.nfnetlink.nfctsocket import NFCTAttrTuple, nfct_msg

    orig = NFCTAttrTuple(proto=d.proto, dport=d.orig_port_dst)
    orig.attrs()  # sets .flags
    filters = [["CTA_FILTER_ORIG_FLAGS", orig.flags]]
    kwargs: dict[str, object] = {"tuple_orig": orig}
    if d.reply_src is not None or d.reply_port_src is not None:
        reply = NFCTAttrTuple(proto=d.proto, saddr=d.reply_src, sport=d.reply_port_src)
        reply.attrs()
        filters.append(["CTA_FILTER_REPLY_FLAGS", reply.flags])
        kwargs["tuple_reply"] = reply
    if d.syn_sent:
        kwargs.update(status=0, status_mask=_SEEN_REPLY)
    return nfct_msg.create_from(cta_filter={"attrs": filters}, **kwargs)


def _matches(d: Deletion, msg: nfct_msg) -> bool:
    """The kernel filtered already; checked again here, so that a kernel that ignores part
    of the filter can never make this delete a live backend's flows."""
    from pyroute2.netlink.nfnetlink.nfctsocket import NFCTAttrTuple

    orig = NFCTAttrTuple.from_netlink(msg["nfgen_family"], msg.get_attr("CTA_TUPLE_ORIG"))
    if orig.proto != d.proto or orig.dport != d.orig_port_dst:
        return False
    if d.reply_src is not None or d.reply_port_src is not None:
        reply = NFCTAttrTuple.from_netlink(msg["nfgen_family"], msg.get_attr("CTA_TUPLE_REPLY"))
        if d.reply_src is not None and reply.saddr != d.reply_src:
            return False
        if d.reply_port_src is not None and reply.sport != d.reply_port_src:
            return False
    return not d.syn_sent or _tcp_state(msg) == _SYN_SENT


def _tcp_state(msg: nfct_msg) -> int | None:
    info = msg.get_attr("CTA_PROTOINFO")
    tcp = info.get_attr("CTA_PROTOINFO_TCP") if info is not None else None
    return tcp.get_attr("CTA_PROTOINFO_TCP_STATE") if tcp is not None else None


def _tracked() -> int | None:
    """Entries in this namespace's conntrack table (None: unknown)."""
    try:
        return int(Path("/proc/sys/net/netfilter/nf_conntrack_count").read_text())
    except (OSError, ValueError):
        return None


def dumps(deletions: Sequence[Deletion]) -> list[list[Deletion]]:
    """The deletions grouped by what one dump can serve (protocol, original destination
    port, SYN_SENT or not), in their order: the backends that left one published port (a
    suspected node's 60, say) are one dump, not 60."""
    groups: dict[tuple[int, int, bool], list[Deletion]] = {}
    for d in deletions:
        groups.setdefault((d.proto, d.orig_port_dst, d.syn_sent), []).append(d)
    return list(groups.values())


async def delete(deletions: Sequence[Deletion]) -> int:
    """Delete the entries of every deletion; the number deleted.

    One dump per group of `dumps`, filtered in the kernel, so that only entries to delete
    come back (pyroute2 parses a message in ~0.3 ms: a dump of every flow would stall the
    loop): a group of one also on its reply source; a larger group on what its deletions
    share, each entry then matched against them all. Each dump walks the kernel's whole
    conntrack hash, every namespace's buckets (~10 ms for the 262,144 of this machine's
    kernel), in the loop's thread: none when this namespace tracks nothing, and
    `MAX_DELETIONS` dumps at most (more raise ValueError: the caller runs the program, in
    its own process)."""
    if not deletions or _tracked() == 0:
        return 0
    from pyroute2.conntrack import AsyncConntrack
    from pyroute2.netlink import NLM_F_DUMP, NLM_F_REQUEST
    from pyroute2.netlink.exceptions import NetlinkError
    from pyroute2.netlink.nfnetlink.nfctsocket import IPCTNL_MSG_CT_GET, NFCTAttrTuple

    groups = dumps(deletions)
    if len(groups) > MAX_DELETIONS:
        raise ValueError(f"{len(groups)} conntrack dumps: more than {MAX_DELETIONS}")
    done = 0
    async with AsyncConntrack() as ct:
        for group in groups:
            first = group[0]
            probe = first if len(group) == 1 else Deletion(
                first.proto, first.orig_port_dst, first.syn_sent)
            found = [m async for m in await ct.request(
                _request(probe), IPCTNL_MSG_CT_GET, msg_flags=NLM_F_REQUEST | NLM_F_DUMP)]
            for msg in found:
                if not any(_matches(d, msg) for d in group):
                    continue
                tuple_orig = NFCTAttrTuple.from_netlink(msg["nfgen_family"],
                                                         msg.get_attr("CTA_TUPLE_ORIG"))
                try:
                    await ct.entry("del", tuple_orig=tuple_orig)
                except NetlinkError as exc:
                    if exc.code != errno.ENOENT:
                        raise
                    continue
                done += 1
    return done

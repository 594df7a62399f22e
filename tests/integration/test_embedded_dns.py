"""The embedded DNS server in a real network namespace: 127.0.0.11:53, UDP and TCP.

A namespace of this test's making stands for a task's (`shoal-dns-<hex>`, deleted in the
fixture's finalizer, also when a test fails). The server runs on this process's event loop;
its sockets live only in that namespace. Queries come from inside it (`ip netns exec ...
python -c` with dnspython). No forwarder is configured: foreign names are REFUSED, so no
packet leaves the namespace.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from shoal import timeouts
from shoal.agent.dns.server import NodeDns
from shoal.gossip.endpoints import EndpointEntry, NetworkAddress
from shoal.gossip.table import EndpointTable
from tests.polling import eventually

ASK = """
import json, sys
import dns.message, dns.query
name, rdtype, tcp = sys.argv[1], sys.argv[2], sys.argv[3] == "tcp"
query = dns.message.make_query(name, rdtype)
ask = dns.query.tcp if tcp else dns.query.udp
reply = ask(query, "127.0.0.11", timeout=3)
print(json.dumps({"rcode": dns.rcode.to_text(reply.rcode()),
                  "addrs": sorted(r.address for rr in reply.answer for r in rr)}))
"""


@pytest.fixture
def netns() -> Iterator[str]:
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces")
    name = f"shoal-dns-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)


async def ask(ns: str, name: str, rdtype: str = "A", tcp: bool = False) -> dict[str, object]:
    proc = await asyncio.create_subprocess_exec(
        "ip", "netns", "exec", ns, sys.executable, "-c", ASK, name, rdtype,
        "tcp" if tcp else "udp",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await timeouts.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    result: dict[str, object] = json.loads(out)
    return result


def entry(task: str, node: str, net: str, addr: str, vip: str, ready: bool = True,
          service: str = "back", aliases: tuple[str, ...] = ("b",)) -> EndpointEntry:
    return EndpointEntry(
        service_id=f"s-{service}", task_id=task, node_id=node, address="198.19.1.9",
        ready=ready, service_name=service,
        networks=(NetworkAddress(net, addr, vip, aliases),),
    )


@pytest.mark.lab
async def test_a_task_resolves_services_on_its_networks_only(netns: str) -> None:
    table = EndpointTable()
    table.set(entry("me", "n1", "appnet", "198.18.1.10", "198.18.1.9", service="front",
                    aliases=()))
    for i, ready in ((3, True), (4, True), (5, False)):
        table.set(entry(f"back{i}", "n1", "appnet", f"198.18.1.{i}", "198.18.1.2", ready))
    table.set(entry("o1", "n1", "othernet", "198.18.2.3", "198.18.2.2", service="other",
                    aliases=()))
    dns_server = NodeDns("n1", table, lambda t: Path("/run/netns", netns if t == "me" else
                                                      "absent-" + t), None)
    runner = asyncio.ensure_future(dns_server.run())
    try:
        await eventually(lambda: "me" in dns_server.tasks, what="sockets in the task netns")
        assert await ask(netns, "back") == {"rcode": "NOERROR", "addrs": ["198.18.1.2"]}
        assert await ask(netns, "b", tcp=True) == {"rcode": "NOERROR", "addrs": ["198.18.1.2"]}
        assert await ask(netns, "tasks.back") == {
            "rcode": "NOERROR", "addrs": ["198.18.1.3", "198.18.1.4"]
        }
        assert await ask(netns, "other") == {"rcode": "REFUSED", "addrs": []}
        assert await ask(netns, "example.com") == {"rcode": "REFUSED", "addrs": []}
        # a task that stops being ready leaves the answer at once
        table.set(entry("back3", "n1", "appnet", "198.18.1.3", "198.18.1.2", ready=False))
        assert await ask(netns, "tasks.back") == {"rcode": "NOERROR", "addrs": ["198.18.1.4"]}
        # the task leaves the table: its sockets close
        table.remove("me")
        await eventually(lambda: "me" not in dns_server.tasks, what="sockets closed")
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
    assert dns_server.tasks == {}

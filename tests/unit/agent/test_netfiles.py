"""A container's resolv.conf and hosts address: the embedded DNS for overlay tasks."""

from __future__ import annotations

from shoal.agent.dns.attachments import network_addresses
from shoal.agent.oci.netfiles import hosts_address, resolv_conf
from shoal.api.types import ContainerSpec, Task, TaskSpec
from shoal.gossip.endpoints import NetworkAddress

HOST = "# host\nnameserver 192.0.2.53\nsearch corp.example\noptions ndots:2 timeout:1\n"
ATTACHED = [
    {"Network": {"ID": "n1", "Spec": {"Name": "appnet", "IPAM": {"Config": [
        {"Subnet": "198.18.1.0/24", "Gateway": "198.18.1.1"}]}}},
     "Addresses": ["198.18.1.5/24"],
     "Aliases": ["web"], "ServiceVIP": "198.18.1.2/24"},
    {"Network": {"ID": "n2"}, "Addresses": ["198.18.2.7/24"]},
    {"Network": {}, "Addresses": ["198.18.3.7/24"]},  # no network: skipped
    "junk",
]


def task(attachments: list[object] | None, dns: dict[str, object] | None = None) -> Task:
    return Task(
        id="t1",
        spec=TaskSpec(container_spec=ContainerSpec(image="busybox", dns_config=dns)),
        networks_attachments=attachments,  # type: ignore[arg-type]
    )


def test_overlay_tasks_ask_the_embedded_server_with_the_hosts_search() -> None:
    text = resolv_conf(task(ATTACHED), HOST)
    assert "192.0.2.53" not in text
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    assert lines == ["nameserver 127.0.0.11", "search corp.example", "options timeout:1 ndots:0"]


def test_dns_config_replaces_search_and_options() -> None:
    text = resolv_conf(task(ATTACHED, {"Search": ["a.example"], "Options": ["ndots:5"]}), HOST)
    assert "search a.example\n" in text and "options ndots:5\n" in text


def test_tasks_without_overlay_keep_the_hosts_file() -> None:
    assert resolv_conf(task(None), HOST) == HOST
    assert hosts_address(task(None), "198.19.1.4") == "198.19.1.4"
    assert hosts_address(task(ATTACHED), "198.19.1.4") == "198.18.1.5"


def test_endpoint_records_carry_each_network_address_vip_and_aliases() -> None:
    assert network_addresses(task(ATTACHED)) == (
        NetworkAddress("n1", "198.18.1.5", "198.18.1.2", ("web",), 24, "198.18.1.1", "appnet"),
        NetworkAddress("n2", "198.18.2.7", "", (), 24, ""),
    )

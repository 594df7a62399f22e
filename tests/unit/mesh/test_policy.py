"""The "local" traffic policy: service labels, the kernel plan and the userspace listeners
(local backends only, refused without one, never masqueraded for an external client), the
health ports' answers (pure) and their HTTP servers (on loopback)."""

from __future__ import annotations

import json
import socket
from dataclasses import replace

import aiohttp
import pytest

from shoal.mesh.errors import MeshError
from shoal.mesh.health import HealthPorts
from shoal.mesh.model import Endpoint, MeshState, PortSpec
from shoal.mesh.plan import plan, plan_ports, render, transaction
from shoal.mesh.policy import (
    HEALTH_PORT_LABEL,
    TRAFFIC_POLICY_LABEL,
    HealthTarget,
    health_targets,
    mesh_labels,
)
from shoal.mesh.userspace.config import listener_specs
from tests.unit.mesh.userspace_support import free_port

SUBNET = "198.19.1.0/24"
LOCAL_WEB = PortSpec("web", "tcp", 8080, 80, "ingress", policy="local", health_port=10256,
                     service_name="web")
LOCAL_DNS = PortSpec("web", "udp", 53, 5353, "ingress", policy="local", health_port=10256,
                     service_name="web")
CLUSTER_API = PortSpec("api", "tcp", 9090, 80, "ingress")


def ep(service: str, task: str, address: str, node: str = "n1", ready: bool = True) -> Endpoint:
    return Endpoint(service, task, node, address, ready)


def state(ports: list[PortSpec], endpoints: list[Endpoint], node: str = "n1") -> MeshState:
    return MeshState(node, SUBNET, tuple(ports), tuple(endpoints))


SPREAD = [
    ep("web", "w1", "198.19.1.10"), ep("web", "w2", "198.19.2.10", node="n2"),
    ep("web", "w3", "198.19.1.11", ready=False),
    ep("api", "a1", "198.19.1.20"), ep("api", "a2", "198.19.2.20", node="n2"),
]


# ---------------------------------------------------------------------------------- labels


def test_labels_default_to_the_cluster_policy_without_health_port() -> None:
    assert mesh_labels(None) == mesh_labels({"other": "x"})
    assert (mesh_labels(None).policy, mesh_labels(None).health_port) == ("cluster", 0)


def test_local_policy_with_a_health_port() -> None:
    got = mesh_labels({TRAFFIC_POLICY_LABEL: " Local ", HEALTH_PORT_LABEL: "10256"})
    assert (got.policy, got.health_port, got.problems) == ("local", 10256, ())
    assert mesh_labels({TRAFFIC_POLICY_LABEL: "cluster"}).problems == ()


@pytest.mark.parametrize(
    ("labels", "problem"),
    [
        ({TRAFFIC_POLICY_LABEL: "nearest"}, 'invalid value "nearest": use "cluster" or "local"'),
        ({TRAFFIC_POLICY_LABEL: "local", HEALTH_PORT_LABEL: "0"}, "between 1 and 65535"),
        ({TRAFFIC_POLICY_LABEL: "local", HEALTH_PORT_LABEL: "65536"}, "between 1 and 65535"),
        ({TRAFFIC_POLICY_LABEL: "local", HEALTH_PORT_LABEL: "http"}, "between 1 and 65535"),
        ({TRAFFIC_POLICY_LABEL: "local", HEALTH_PORT_LABEL: "\uff11\uff12"}, "between 1 and 65535"),
        ({HEALTH_PORT_LABEL: "10256"}, "needs shoal.mesh.traffic-policy=local"),
        ({TRAFFIC_POLICY_LABEL: "cluster", HEALTH_PORT_LABEL: "10256"}, "needs"),
    ],
)
def test_bad_labels_are_reported_and_fall_back_to_the_defaults(
    labels: dict[str, str], problem: str
) -> None:
    got = mesh_labels(labels)
    assert len(got.problems) == 1 and problem in got.problems[0]
    # leniently read (the mesh's way): nothing half-applied, never a health port for cluster
    assert got.policy == ("local" if labels.get(TRAFFIC_POLICY_LABEL) == "local" else "cluster")
    assert got.health_port == 0


# ---------------------------------------------------------------------------- kernel plan


def test_local_policy_balances_over_this_nodes_ready_tasks_only() -> None:
    rs = render(state([LOCAL_WEB, CLUSTER_API], SPREAD))
    assert rs is not None
    (web,) = rs.chain_map()["svc-tcp-8080"].rules
    assert 'dnat ip to 198.19.1.10:80 comment "service web"' in web  # not n2's 198.19.2.10
    (api,) = rs.chain_map()["svc-tcp-9090"].rules
    assert "198.19.1.20" in api and "198.19.2.20" in api  # the cluster policy: every node's
    ports = {p.key: p for p in plan(state([LOCAL_WEB, CLUSTER_API], SPREAD)).ports}
    assert ports[("tcp", 8080)].policy == "local" and ports[("tcp", 9090)].policy == "cluster"


def test_local_policy_without_a_local_task_refuses_where_host_mode_would_not_open() -> None:
    elsewhere = [ep("web", "w2", "198.19.2.10", node="n2")]
    rs = render(state([LOCAL_WEB, LOCAL_DNS], elsewhere))
    assert rs is not None
    assert dict(rs.set_map()["refused"].elements) == {"tcp . 8080": "", "udp . 53": ""}
    assert dict(rs.set_map()["ports"].elements) == {}
    assert "svc-tcp-8080" not in rs.chain_map()


def test_local_policy_never_masquerades_an_external_client() -> None:
    # masquerade happens for marked flows to another node's subnet, or from loopback or a
    # local task (a task cannot answer those directly); a local service's backends are all
    # in this node's subnet, so an external client's flow matches neither rule
    ports, _ = plan_ports(state([LOCAL_WEB], SPREAD))
    assert [p.backends for p in ports] == [("198.19.1.10",)]
    rs = render(state([LOCAL_WEB], SPREAD))
    assert rs is not None
    post = rs.chain_map()["nat-postrouting"].rules
    assert post[2].startswith(f"ip daddr != {SUBNET} masquerade")
    assert post[3].startswith(f"ip saddr {{ 127.0.0.0/8, {SUBNET} }} masquerade")


def test_policy_change_rewrites_only_that_ports_chain() -> None:
    cluster = render(state([replace(LOCAL_WEB, policy="cluster"), CLUSTER_API], SPREAD))
    local = render(state([LOCAL_WEB, CLUSTER_API], SPREAD))
    script = transaction(cluster, local)
    assert script.splitlines() == [
        "flush chain inet shoal svc-tcp-8080",
        "add rule inet shoal svc-tcp-8080 meta l4proto tcp meta mark set meta mark |"
        ' 0x00400000 dnat ip to 198.19.1.10:80 comment "service web"',
    ]


# ----------------------------------------------------------------------- userspace plane


def test_userspace_listeners_follow_the_local_policy() -> None:
    specs, _ = listener_specs(state([LOCAL_WEB, LOCAL_DNS, CLUSTER_API], SPREAD))
    assert specs[("tcp", 8080)].backends == ("198.19.1.10",)
    assert specs[("udp", 53)].backends == ("198.19.1.10",)
    assert specs[("tcp", 9090)].backends == ("198.19.1.20", "198.19.2.20")
    on_n2, _ = listener_specs(state([LOCAL_WEB], SPREAD[1:2], node="n3"))
    assert on_n2[("tcp", 8080)].backends == ()  # opened, and refusing


# --------------------------------------------------------------------------- health ports


def test_health_targets_count_this_nodes_ready_tasks() -> None:
    targets, problems = health_targets(state([LOCAL_WEB, LOCAL_DNS, CLUSTER_API], SPREAD))
    assert targets == {10256: HealthTarget(10256, "web", "web", 1)} and problems == ()
    assert targets[10256].status == 200
    on_n3, _ = health_targets(state([LOCAL_WEB], SPREAD, node="n3"))
    assert on_n3[10256].local_endpoints == 0 and on_n3[10256].status == 503


def test_health_port_of_a_cluster_service_is_not_served_and_clashes_are_reported() -> None:
    stray = PortSpec("api", "tcp", 9090, 80, "ingress", health_port=10256)
    assert health_targets(state([stray], SPREAD))[0] == {}
    other = PortSpec("zz", "tcp", 7070, 80, "ingress", policy="local", health_port=10256)
    targets, problems = health_targets(state([other, LOCAL_WEB, LOCAL_DNS], SPREAD))
    assert targets[10256].service_id == "web"  # the lowest service ID keeps it
    assert problems == ("service zz: health port 10256 is already served for service web; "
                        "skipped",)


async def get(port: int) -> tuple[int, object]:
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(timeout=timeout) as session, session.get(
        f"http://127.0.0.1:{port}/healthz"
    ) as resp:
        return resp.status, json.loads(await resp.text())


async def test_health_ports_answer_follow_the_state_and_close() -> None:
    number = free_port()
    port = PortSpec("web", "tcp", 8080, 80, "ingress", policy="local", health_port=number,
                    service_name="web")
    health = HealthPorts("127.0.0.1")
    try:
        await health.apply(state([port], SPREAD))
        assert health.ports == [number]
        assert await get(number) == (200, {"service": "web", "localEndpoints": 1})
        await health.apply(state([port], SPREAD[1:]))  # n1's ready task left
        assert await get(number) == (503, {"service": "web", "localEndpoints": 0})
        await health.apply(state([port], [*SPREAD, ep("web", "w4", "198.19.1.12")]))
        assert await get(number) == (200, {"service": "web", "localEndpoints": 2})
        await health.apply(state([], SPREAD))
        assert health.ports == []
        with pytest.raises(aiohttp.ClientConnectionError):
            await get(number)
    finally:
        await health.close()


async def test_a_busy_health_port_is_an_error_and_is_retried() -> None:
    number = free_port()
    port = PortSpec("web", "tcp", 8080, 80, "ingress", policy="local", health_port=number)
    health = HealthPorts("127.0.0.1")
    holder = socket.socket()
    holder.bind(("127.0.0.1", number))
    holder.listen()
    try:
        with pytest.raises(MeshError, match=f"health port 127.0.0.1:{number}"):
            await health.apply(state([port], SPREAD))
        assert health.ports == []
        holder.close()
        await health.apply(state([port], SPREAD))
        assert health.ports == [number]
        assert (await get(number))[0] == 200
    finally:
        holder.close()
        await health.close()


def test_ports_fall_back_to_terminating_tasks_until_one_is_ready() -> None:
    """kube-proxy's terminating endpoints: a node whose only local task drains keeps using
    it (not refusing) until a replacement is ready; then only the ready one gets traffic."""
    draining = ep("web", "w3", "198.19.1.11", ready=False)
    rs = render(state([LOCAL_WEB], [ep("web", "w2", "198.19.2.10", node="n2"), draining]))
    assert rs is not None
    assert dict(rs.set_map()["refused"].elements) == {}
    (rule,) = rs.chain_map()["svc-tcp-8080"].rules
    assert "198.19.1.11" in rule and "198.19.2.10" not in rule
    replaced = render(state([LOCAL_WEB], [draining, ep("web", "w4", "198.19.1.12")]))
    assert replaced is not None
    (rule,) = replaced.chain_map()["svc-tcp-8080"].rules
    assert "198.19.1.12" in rule and "198.19.1.11" not in rule
    # the cluster policy falls back too (KEP-1669): to every node's terminating tasks
    terminating = [ep("api", "a1", "198.19.1.20", ready=False),
                   ep("api", "a2", "198.19.2.20", node="n2", ready=False)]
    cluster = plan(state([CLUSTER_API], terminating))
    assert [p.backends for p in cluster.ports] == [("198.19.1.20", "198.19.2.20")]
    ready = plan(state([CLUSTER_API], [*terminating, ep("api", "a3", "198.19.2.21", node="n2")]))
    assert [p.backends for p in ready.ports] == [("198.19.2.21",)]

"""The userspace mesh's pure part: listeners of a state (same choices as the kernel plan),
the round-robin pool, the PROXY protocol label; and the daemon's `--mesh userspace`."""

from __future__ import annotations

import ast
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from shoal.mesh.model import Endpoint, MeshState, PortSpec
from shoal.mesh.plan import plan_ports
from shoal.mesh.userspace import config
from shoal.mesh.userspace.config import (
    PROXY_PROTOCOL_LABEL,
    Pool,
    listener_specs,
    proxy_protocol_ports,
)
from tests.unit.mesh.userspace_support import endpoint, port, state


def test_listeners_follow_the_kernel_plan() -> None:
    desired = state(
        [port(8080, 80), port(8080, 80, service="zz"), port(53, 53, "udp", proxy=True),
         port(9090, 80, mode="host"), port(9091, 80, mode="host", service="db"),
         port(7070, 80, service="db")],
        [endpoint(0), endpoint(1, node="n2"), endpoint(2, ready=False),
         endpoint(3, node="n2", service="db")],
    )
    specs, problems = listener_specs(desired)
    assert sorted(specs) == [("tcp", 7070), ("tcp", 8080), ("tcp", 9090), ("udp", 53)]
    assert specs[("tcp", 8080)].backends == ("127.0.0.2", "127.0.0.3")  # both nodes, ready
    assert specs[("tcp", 8080)].service_id == "web"  # the lowest service ID keeps a port
    assert specs[("tcp", 9090)].backends == ("127.0.0.2",)  # host mode: local only
    assert specs[("tcp", 7070)].backends == ("127.0.0.5",)
    assert specs[("udp", 53)].proxy_protocol and not specs[("tcp", 8080)].proxy_protocol
    assert any("8080" in p for p in problems)  # the other owner of tcp/8080 is reported
    kernel, _ = plan_ports(desired)
    assert {(p.key, p.backends) for p in kernel} == {(k, s.backends) for k, s in specs.items()}


services = st.sampled_from(["a", "b", "c"])
port_specs = st.builds(
    PortSpec, services, st.sampled_from(["tcp", "udp", "sctp"]),
    st.sampled_from([0, 53, 80, 8080, 70000]), st.sampled_from([0, 53, 80, 65536]),
    st.sampled_from(["ingress", "host"]), st.booleans(), st.sampled_from(["cluster", "local"]),
)
endpoints = st.builds(
    Endpoint, services, st.text("xyz", min_size=1, max_size=2), st.sampled_from(["n1", "n2"]),
    st.sampled_from(["198.19.1.2", "198.19.1.3", "198.19.2.2", "10.0.0.1", "198.19.1.10",
                     "bogus", "::1", "198.019.1.2", "1.2.3", "256.1.1.1", " 1.2.3.4",
                     "1.2.3.4.", "\uff11.2.3.4", "0.0.0.0"]),
    st.booleans(),
)


@given(st.lists(port_specs, max_size=8), st.lists(endpoints, max_size=12))
def test_linear_selection_equals_the_kernel_planner(
    ports: list[PortSpec], eps: list[Endpoint]
) -> None:
    desired = MeshState("n1", "198.19.1.0/24", tuple(ports), tuple(eps))
    specs, problems = listener_specs(desired)
    kernel, kernel_problems = plan_ports(desired)
    assert problems == kernel_problems
    assert [(p.key, p.target, p.service_id, p.backends) for p in kernel] == [
        (k, s.target, s.service_id, s.backends) for k, s in sorted(specs.items())
    ]


def test_pool_round_robin_exclusion_and_update() -> None:
    pool = Pool(80, ("a", "b", "c"))
    assert [pool.pick() for _ in range(4)] == [("a", 80), ("b", 80), ("c", 80), ("a", 80)]
    assert pool.pick({("b", 80)}) == ("c", 80)
    assert pool.pick({("a", 80), ("b", 80), ("c", 80)}) is None
    assert ("a", 80) in pool and ("a", 81) not in pool and "a" not in pool
    pool.update(81, ("b",))
    assert ("a", 81) not in pool and pool.pick() == ("b", 81) and len(pool) == 1
    pool.update(81, ())
    assert pool.pick() is None and not len(pool)


@given(st.lists(st.sampled_from("abcdef"), unique=True, min_size=1), st.integers(0, 50))
def test_pool_is_fair(backends: list[str], skip: int) -> None:
    pool = Pool(80, tuple(backends))
    for _ in range(skip):
        pool.pick()
    picks = [pool.pick() for _ in range(len(backends) * 3)]
    assert all(picks.count((b, 80)) == 3 for b in backends)


def test_proxy_protocol_label() -> None:
    assert proxy_protocol_ports(None) == (set(), [])
    assert proxy_protocol_ports({PROXY_PROTOCOL_LABEL: "8080, 53/udp 9090/TCP"}) == (
        {("tcp", 8080), ("udp", 8080), ("udp", 53), ("tcp", 9090)}, [])
    assert proxy_protocol_ports({PROXY_PROTOCOL_LABEL: "0,x,80/sctp,70000,81"}) == (
        {("tcp", 81), ("udp", 81)}, ["0", "x", "80/sctp", "70000"])


def test_config_is_pure() -> None:
    tree = ast.parse(Path(config.__file__).read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    assert not names & {"asyncio", "socket", "time", "random", "os", "subprocess"}


def test_daemon_makes_the_userspace_plane(tmp_path: Path) -> None:
    from shoal.mesh.userspace import UserspaceDataPlane
    from shoal.node.host import make_plane
    from shoal.node.node import Node
    from shoal.node.options import DaemonOptions

    daemon = Node(DaemonOptions(data_root=tmp_path, hostname="h1", mesh="userspace"))
    plane = make_plane(daemon.opts.mesh)
    assert isinstance(plane, UserspaceDataPlane) and plane.host == "0.0.0.0"

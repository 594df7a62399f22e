"""The pure planner: what it renders for a state, and that its transactions reach it."""

from __future__ import annotations

import ast
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shoal.mesh import plan as planner
from shoal.mesh.errors import MeshError
from shoal.mesh.model import Endpoint, MeshState, PortSpec
from shoal.mesh.plan import conntrack_flushes, plan, render, transaction
from shoal.mesh.plan_cache import PlanCache

from .nftmodel import NftError, NftModel, expected
from .states import SUBNET, many_services


def ep(service: str, task: str, address: str, node: str = "n1", ready: bool = True) -> Endpoint:
    return Endpoint(service, task, node, address, ready)


def state(ports: list[PortSpec], endpoints: list[Endpoint], subnet: str = SUBNET) -> MeshState:
    return MeshState("n1", subnet, tuple(ports), tuple(endpoints))


WEB = PortSpec("web", "tcp", 8080, 80, "ingress")
DNS = PortSpec("web", "udp", 53, 5353, "ingress")
EMPTY = PortSpec("idle", "tcp", 9090, 80, "ingress")
HOST = PortSpec("hosted", "tcp", 8081, 80, "host")

SAMPLE = state(
    [WEB, DNS, EMPTY, HOST],
    [
        ep("web", "t3", "198.19.2.7", node="n2"),
        ep("web", "t1", "198.19.1.11"),
        ep("web", "t2", "198.19.1.10"),
        ep("web", "t4", "198.19.1.12", ready=False),
        ep("hosted", "h1", "198.19.1.20"),
        ep("hosted", "h2", "198.19.2.20", node="n2"),
    ],
)


def rules(rs: planner.Ruleset | None, chain: str) -> tuple[str, ...]:
    assert rs is not None
    return rs.chain_map()[chain].rules


def elements(rs: planner.Ruleset | None, name: str) -> dict[str, str]:
    assert rs is not None
    return dict(rs.set_map()[name].elements)


# ------------------------------------------------------------------------ what is rendered


def test_ingress_port_round_robins_over_ready_endpoints_of_all_nodes() -> None:
    rs = render(SAMPLE)
    (rule,) = rules(rs, "svc-tcp-8080")
    assert rule == (
        "meta l4proto tcp meta mark set meta mark | 0x00400000 dnat ip to numgen inc mod 3"
        " map { 0 : 198.19.1.10, 1 : 198.19.1.11, 2 : 198.19.2.7 } : 80"
        ' comment "service web"'
    )
    assert elements(rs, "ports")["tcp . 8080"] == "goto svc-tcp-8080"
    (udp,) = rules(rs, "svc-udp-53")
    assert udp.startswith("meta l4proto udp ") and udp.endswith(' : 5353 comment "service web"')


def test_host_mode_uses_only_local_endpoints_and_opens_only_with_one() -> None:
    rs = render(SAMPLE)
    (rule,) = rules(rs, "svc-tcp-8081")
    assert rule.endswith('dnat ip to 198.19.1.20:80 comment "service hosted"')
    unready = state([HOST], [ep("hosted", "h1", "198.19.1.20", ready=False),
                             ep("hosted", "h2", "198.19.2.20", node="n2")])
    assert render(unready) is None  # not opened at all: no table


def test_ingress_port_without_ready_endpoint_is_refused() -> None:
    rs = render(SAMPLE)
    assert elements(rs, "refused") == {"tcp . 9090": ""}
    assert "tcp . 9090" not in elements(rs, "ports")
    assert "svc-tcp-9090" not in rs.chain_map()  # type: ignore[union-attr]
    assert rules(rs, "filter-input")[0] == (
        "meta nfproto ipv4 ct state new fib daddr type local"
        " meta l4proto . th dport @refused goto refuse"
    )
    assert rules(rs, "refuse") == ("meta l4proto tcp reject with tcp reset", "reject")


def test_hooks_dnat_local_addresses_and_masquerade_by_mark() -> None:
    rs = render(SAMPLE)
    vmap = "meta nfproto ipv4 fib daddr type local meta l4proto . th dport vmap @ports"
    assert rules(rs, "nat-prerouting") == (vmap,)
    assert rules(rs, "nat-output") == (vmap,)
    post = rules(rs, "nat-postrouting")
    assert post[0] == "meta mark & 0x00400000 == 0 return"
    assert "ip daddr != 198.19.1.0/24 masquerade comment" in post[2]
    assert "ip saddr { 127.0.0.0/8, 198.19.1.0/24 } masquerade comment" in post[3]
    assert rs is not None and rs.chain_map()["nat-prerouting"].hook.startswith(
        "type nat hook prerouting priority -100;"
    )
    # forwarded SYNs (to a task across the overlay) get their MSS clamped to the route MTU
    assert rules(rs, "mangle-forward") == (
        "tcp flags syn / syn,rst tcp option maxseg size set rt mtu",
    )


def test_render_is_deterministic_whatever_the_input_order() -> None:
    rng = random.Random(7)
    for _ in range(20):
        ports, eps = list(SAMPLE.ports), list(SAMPLE.endpoints)
        rng.shuffle(ports)
        rng.shuffle(eps)
        assert render(state(ports, eps)) == render(SAMPLE)


def test_no_port_means_no_table() -> None:
    assert render(state([], [ep("web", "t1", "198.19.1.10")])) is None
    assert transaction(None, None) == ""
    assert transaction(render(SAMPLE), None) == "delete table inet shoal\n"


def test_problems_are_reported_and_skipped() -> None:
    other = PortSpec("zzz", "tcp", 8080, 81, "ingress")
    bad = state([other, WEB], [ep("web", "t1", "not-an-ip"), ep("web", "t2", "198.19.1.10")])
    result = plan(bad)
    # the lowest service ID keeps a doubly published port (the manager should never allow it)
    assert [(p.service_id, p.backends) for p in result.ports] == [("web", ("198.19.1.10",))]
    assert any("already published" in p for p in result.problems)
    assert any("not-an-ip" in p for p in result.problems)
    with pytest.raises(MeshError):
        plan(state([WEB], [], subnet="nonsense"))


# ---------------------------------------------------------------------------- transactions


def test_first_apply_replaces_whatever_the_table_held() -> None:
    script = transaction(None, render(SAMPLE), prev_known=False)
    lines = script.splitlines()
    assert lines[:3] == [
        "add table inet shoal",
        "delete table inet shoal",
        'add table inet shoal { comment "shoal routing mesh"; }',
    ]
    model = NftModel()
    model.run("add table inet shoal\nadd chain inet shoal stale\n")
    model.run(script)
    assert model.tables == expected(render(SAMPLE))


def test_an_endpoint_change_touches_only_its_port() -> None:
    before = render(SAMPLE)
    after = render(state(list(SAMPLE.ports), [*SAMPLE.endpoints, ep("web", "t9", "198.19.1.9")]))
    script = transaction(before, after)
    assert script.splitlines() == [
        "flush chain inet shoal svc-tcp-8080",
        *[f"add rule inet shoal svc-tcp-8080 {r}" for r in rules(after, "svc-tcp-8080")],
        "flush chain inet shoal svc-udp-53",
        *[f"add rule inet shoal svc-udp-53 {r}" for r in rules(after, "svc-udp-53")],
    ]
    assert transaction(after, after) == ""


def test_publish_rm_deletes_the_element_before_the_chain() -> None:
    before = render(SAMPLE)
    after = render(state([DNS, EMPTY, HOST], list(SAMPLE.endpoints)))
    lines = transaction(before, after).splitlines()
    assert lines == [
        "delete element inet shoal flows-tcp { 8080 }",  # the port's counters go with it
        "delete element inet shoal traffic-tcp { 8080 }",
        "delete element inet shoal ports { tcp . 8080 }",
        "flush chain inet shoal svc-tcp-8080",
        "delete chain inet shoal svc-tcp-8080",
    ]


def test_table_name_is_checked() -> None:
    with pytest.raises(MeshError):
        transaction(None, render(SAMPLE, table="other"), "shoal")


# ------------------------------------------------------------------------------- hypothesis

ADDRESSES = [f"198.19.1.{i}" for i in range(2, 7)] + [f"198.19.2.{i}" for i in range(2, 5)]

port_specs = st.builds(
    PortSpec,
    service_id=st.sampled_from(["a", "b", "c"]),
    protocol=st.sampled_from(["tcp", "udp"]),
    published=st.sampled_from([53, 80, 8080, 9090]),
    target=st.sampled_from([80, 5353]),
    mode=st.sampled_from(["ingress", "ingress", "host"]),
    policy=st.sampled_from(["cluster", "cluster", "local"]),
)
endpoints = st.builds(
    Endpoint,
    service_id=st.sampled_from(["a", "b", "c"]),
    task_id=st.text("tuvw", min_size=1, max_size=2),
    node_id=st.sampled_from(["n1", "n1", "n2"]),
    address=st.sampled_from(ADDRESSES),
    ready=st.booleans(),
)
states = st.builds(
    MeshState,
    node_id=st.just("n1"),
    local_subnet=st.sampled_from([SUBNET, SUBNET, "198.19.2.0/24"]),
    ports=st.lists(port_specs, max_size=6).map(tuple),
    endpoints=st.lists(endpoints, max_size=8).map(tuple),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(states, min_size=1, max_size=5))
def test_diffs_applied_in_sequence_equal_rendering_the_last(seq: list[MeshState]) -> None:
    model = NftModel()
    prev: planner.Ruleset | None = None
    for s in seq:
        new = render(s)
        model.run(transaction(prev, new))
        assert model.tables == expected(new)
        prev = new
    fresh = NftModel()
    fresh.run(transaction(None, prev, prev_known=False))
    assert fresh.tables == model.tables


@settings(max_examples=100, deadline=None)
@given(states, states)
def test_unknown_previous_state_is_replaced_whole(a: MeshState, b: MeshState) -> None:
    model = NftModel()
    model.run(transaction(None, render(a)))
    model.run(transaction(None, render(b), prev_known=False))
    assert model.tables == expected(render(b))


def test_model_is_strict_and_transactional() -> None:
    model = NftModel()
    model.run(transaction(None, render(SAMPLE)))
    before = expected(render(SAMPLE))
    with pytest.raises(NftError):
        model.run("flush chain inet shoal svc-tcp-8080\ndelete chain inet shoal svc-tcp-8080\n")
    assert model.tables == before


# -------------------------------------------------------------------------------- conntrack


def test_backends_that_leave_lose_udp_flows_and_tcp_half_open_ones() -> None:
    a = plan(SAMPLE).ports
    fewer = plan(state(list(SAMPLE.ports), [e for e in SAMPLE.endpoints if e.task_id != "t1"]))
    assert conntrack_flushes(a, fewer.ports) == (
        ("-D", "-p", "tcp", "--state", "SYN_SENT", "--orig-port-dst", "8080",
         "--reply-src", "198.19.1.11", "--reply-port-src", "80"),
        ("-D", "-p", "udp", "--orig-port-dst", "53", "--reply-src", "198.19.1.11",
         "--reply-port-src", "5353"),
    )
    assert conntrack_flushes(None, fewer.ports) == ()
    assert conntrack_flushes(a, a) == ()


def test_udp_port_getting_its_first_backend_flushes_unnatted_flows() -> None:
    none = plan(state([DNS], [])).ports
    one = plan(state([DNS], [ep("web", "t1", "198.19.1.11")])).ports
    assert conntrack_flushes(none, one) == (("-D", "-p", "udp", "--orig-port-dst", "53"),)
    assert conntrack_flushes((), one) == (("-D", "-p", "udp", "--orig-port-dst", "53"),)


# ----------------------------------------------------------------------------------- purity

FORBIDDEN = {"asyncio", "socket", "time", "random", "os", "subprocess", "threading"}


@pytest.mark.parametrize(
    "module",
    ["plan.py", "plan_cache.py", "plan_delta.py", "model.py", "errors.py", "policy.py",
     "traffic.py"],
)
def test_pure_modules_import_no_io(module: str) -> None:
    path = Path(planner.__file__).parent / module
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    assert not names & FORBIDDEN


def test_a_port_that_loses_every_backend_is_flushed_in_one_call_per_protocol() -> None:
    a = plan(SAMPLE).ports
    gone = plan(state([], [])).ports
    flushes = conntrack_flushes(a, gone)
    assert all("--reply-src" not in f for f in flushes)
    assert ("-D", "-p", "tcp", "--state", "SYN_SENT", "--orig-port-dst", "8080") in flushes
    assert ("-D", "-p", "udp", "--orig-port-dst", "53") in flushes
    assert len(flushes) == len([p for p in a if p.backends])  # none for a port without any


# ------------------------------------------------------------------------- the plan cache
@settings(max_examples=300, deadline=None)
@given(st.lists(states, min_size=1, max_size=4), st.lists(st.integers(0, 3), max_size=8))
def test_a_cached_plan_is_the_plain_plan(pool: list[MeshState], visits: list[int]) -> None:
    """Random states, revisited in any order (so cached work is reused and invalidated):
    the planner with a cache always gives exactly what the plain planner gives."""
    cache = PlanCache()
    for i in [*range(len(pool)), *visits]:
        s = pool[i % len(pool)]
        assert plan(s, cache=cache) == plan(s)


def test_the_cache_replans_only_the_service_that_changed() -> None:
    cache = PlanCache()
    plan(many_services(50), cache=cache)
    before = cache.misses
    changed = plan(many_services(50, moved="t7.1"), cache=cache)
    assert cache.misses - before == 1  # one service's backends computed again, 49 reused
    assert changed == plan(many_services(50, moved="t7.1"))
    again = plan(many_services(50, moved="t7.1"), cache=cache)
    assert cache.misses - before == 1 and again == changed

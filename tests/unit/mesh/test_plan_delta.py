"""The delta planner (`plan_delta.py`) gives exactly what the full planner gives: the plan,
the transaction from the previous plan and the conntrack flushes, after every step of random
sequences of states; and it replans only the ports of the services that changed."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from shoal.mesh.model import (
    Endpoint,
    MeshState,
    PortSpec,
    changed_services,
    service_groups,
)
from shoal.mesh.plan import Plan, conntrack_flushes, plan, transaction
from shoal.mesh.plan_delta import DeltaPlanner

from .nftmodel import NftModel, expected
from .states import SUBNET, many_services

SERVICES = ["a", "b", "c", "d"]
# mostly valid IPv4 task addresses, and one that is not (a problem the planner reports)
ADDRESSES = [f"198.19.1.{i}" for i in range(2, 7)] + [f"198.19.2.{i}" for i in range(2, 5)]

port_specs = st.builds(
    PortSpec,
    service_id=st.sampled_from(SERVICES),
    protocol=st.sampled_from(["tcp", "tcp", "udp", "udp", "sctp"]),  # sctp: invalid
    published=st.sampled_from([0, 53, 80, 8080, 9090]),  # 0: invalid
    target=st.sampled_from([80, 5353]),
    mode=st.sampled_from(["ingress", "ingress", "host"]),
    policy=st.sampled_from(["cluster", "cluster", "local"]),
)
endpoints = st.builds(
    Endpoint,
    service_id=st.sampled_from(SERVICES),
    task_id=st.text("tuvw", min_size=1, max_size=2),
    node_id=st.sampled_from(["n1", "n1", "n2"]),
    address=st.sampled_from([*ADDRESSES, "not-an-address"]),
    ready=st.booleans(),
)
states = st.builds(
    MeshState,
    node_id=st.sampled_from(["n1", "n1", "n1", "n2"]),
    local_subnet=st.sampled_from([SUBNET, SUBNET, SUBNET, "198.19.2.0/24"]),
    ports=st.lists(port_specs, max_size=7).map(tuple),
    endpoints=st.lists(endpoints, max_size=9).map(tuple),
)


def _step(planner: DeltaPlanner, prev: MeshState, new: MeshState,
          extra: frozenset[str]) -> tuple[str, Plan]:
    """One delta step checked against the full planner; `extra` services are named too.
    Returns the step's script and the full plan of `new`."""
    before = plan(prev)
    services = changed_services(service_groups(prev), service_groups(new)) | extra
    result = planner.delta(new, services)
    after = plan(new)
    assert planner.plan() == after
    assert result.problems == after.problems
    assert result.script == transaction(before.ruleset, after.ruleset)
    assert result.flushes == conntrack_flushes(before.ports, after.ports)
    return result.script, after


@settings(max_examples=400, deadline=None)
@given(st.lists(states, min_size=1, max_size=4), st.lists(st.integers(0, 3), max_size=8),
       st.frozensets(st.sampled_from(SERVICES), max_size=2))
def test_a_delta_plan_is_the_full_plan_after_every_step(
    pool: list[MeshState], visits: list[int], extra: frozenset[str]
) -> None:
    """Random states in any order (so most steps change several services at once)."""
    planner = DeltaPlanner()
    first = pool[0]
    assert planner.full(first) == plan(first)
    model = NftModel()
    model.run(transaction(None, plan(first).ruleset))
    prev = first
    for i in [*range(1, len(pool)), *visits]:
        new = pool[i % len(pool)]
        script, after = _step(planner, prev, new, extra)
        model.run(script)
        assert model.tables == expected(after.ruleset)
        prev = new


def _mutate(state: MeshState, service: str, ports: tuple[PortSpec, ...],
            eps: tuple[Endpoint, ...]) -> MeshState:
    """`state` with `service`'s ports and endpoints replaced (the others kept, in order)."""
    kept_ports = tuple(p for p in state.ports if p.service_id != service)
    kept_eps = tuple(e for e in state.endpoints if e.service_id != service)
    mine_p = tuple(PortSpec(service, p.protocol, p.published, p.target, p.mode,
                            policy=p.policy) for p in ports)
    mine_e = tuple(Endpoint(service, e.task_id, e.node_id, e.address, e.ready) for e in eps)
    return MeshState(state.node_id, state.local_subnet, kept_ports + mine_p, kept_eps + mine_e)


@settings(max_examples=300, deadline=None)
@given(states, st.lists(st.tuples(st.sampled_from(SERVICES),
                                  st.lists(port_specs, max_size=2).map(tuple),
                                  st.lists(endpoints, max_size=3).map(tuple)),
                        min_size=1, max_size=8))
def test_one_service_changed_at_a_time_is_planned_as_the_full_planner_does(
    start: MeshState, changes: list[tuple[str, tuple[PortSpec, ...], tuple[Endpoint, ...]]]
) -> None:
    """The common case: a run of single-service changes (ports taken over from another
    service, endpoints coming and going, the table appearing and going)."""
    planner = DeltaPlanner()
    planner.full(start)
    prev = start
    for service, ports, eps in changes:
        new = _mutate(prev, service, ports, eps)
        _step(planner, prev, new, frozenset())
        prev = new


def test_one_endpoint_change_replans_one_port_and_sends_one_chain() -> None:
    planner = DeltaPlanner()
    planner.full(many_services(50))
    result = planner.delta(many_services(50, moved="t7.1"), {"s7"})
    assert planner.replanned == 1 and not result.full
    assert result.script == (
        "flush chain inet shoal svc-tcp-20007\n"
        "add rule inet shoal svc-tcp-20007 meta l4proto tcp meta mark set meta mark | "
        "0x00400000 dnat ip to numgen inc mod 3 map { 0 : 198.19.7.2, 1 : 198.19.7.4, "
        "2 : 198.19.250.250 } : 80 comment \"service s7\"\n"
    )
    assert result.flushes == (
        ("-D", "-p", "tcp", "--state", "SYN_SENT", "--orig-port-dst", "20007",
         "--reply-src", "198.19.7.3", "--reply-port-src", "80"),
    )
    same = planner.delta(many_services(50, moved="t7.1"), set())
    assert same.script == "" and same.flushes == () and planner.replanned == 0


def test_a_node_or_subnet_change_is_planned_whole() -> None:
    planner = DeltaPlanner()
    planner.full(many_services(3))
    other = MeshState("n1", "198.19.9.0/24", many_services(3).ports, many_services(3).endpoints)
    result = planner.delta(other, set())
    assert result.full and planner.plan() == plan(other)
    assert result.script == transaction(plan(many_services(3)).ruleset, plan(other).ruleset)

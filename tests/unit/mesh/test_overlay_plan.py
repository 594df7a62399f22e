"""The overlay's pure parts: MAC derivation, peer selection, and the planner against its
kernel model (any held state converges in one plan; unchanged remotes are never touched;
next hops exist before routes use them)."""

from __future__ import annotations

import ast
import ipaddress
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shoal.errors import InvalidArgument
from shoal.mesh.overlay import model as overlay_model
from shoal.mesh.overlay.model import (
    DeviceSpec,
    OverlayPeer,
    Remote,
    overlay_mtu,
    select_remotes,
    vtep_mac,
)
from shoal.mesh.overlay.plan import (
    CreateDevice,
    DeleteDevice,
    DelFdb,
    DelNeigh,
    DelRoute,
    DeviceView,
    KernelView,
    Op,
    PlanError,
    SetFdb,
    SetNeigh,
    SetRoute,
    op_keys,
    plan,
    simulate,
    wanted_view,
)

Net = ipaddress.IPv4Network
Addr = ipaddress.IPv4Address
LOCAL = Addr("198.18.0.11")
LOCAL_NET = Net("198.19.1.0/24")
SPEC = DeviceSpec(
    name="shoal.4096",
    vni=4096,
    port=4789,
    local=LOCAL,
    link=2,
    mac=vtep_mac(LOCAL_NET),
    mtu=1450,
    address=LOCAL_NET.network_address,
)


def remote(k: int, host: int | None = None) -> Remote:
    return Remote(Net(f"198.19.{k}.0/24"), Addr(f"198.18.0.{host if host else 10 + k}"))


def remotes(*items: Remote) -> dict[Net, Remote]:
    return {r.subnet: r for r in items}


# --------------------------------------------------------------------------------- MACs


def test_vtep_mac_is_0a58_and_the_network_address() -> None:
    assert vtep_mac(Net("198.19.2.0/24")) == "0a:58:c6:13:02:00"
    assert vtep_mac(Net("10.0.255.0/24")) == "0a:58:0a:00:ff:00"
    assert remote(7).mac == "0a:58:c6:13:07:00"
    assert remote(7).via == Addr("198.19.7.0")


@given(st.integers(0, 2**32 - 1), st.integers(8, 30), st.integers(0, 2**32 - 1))
def test_vtep_macs_are_unicast_local_and_distinct(a: int, prefix: int, b: int) -> None:
    x = Net((a, prefix), strict=False)
    y = Net((b, prefix), strict=False)
    first = int(vtep_mac(x).split(":")[0], 16)
    assert first & 0b10 and not first & 0b01  # locally administered, unicast
    assert (vtep_mac(x) == vtep_mac(y)) == (x.network_address == y.network_address)


def test_mtu_leaves_room_for_the_vxlan_headers() -> None:
    assert overlay_mtu(1500) == 1450
    assert overlay_mtu(9000) == 8950


# ---------------------------------------------------------------------------- selection


def test_peers_are_validated() -> None:
    with pytest.raises(InvalidArgument, match="underlay"):
        OverlayPeer("n2", "not-an-ip", "198.19.2.0/24")
    with pytest.raises(InvalidArgument, match="subnet"):
        OverlayPeer("n2", "198.18.0.12", "198.19.2.1/24")  # host bits
    with pytest.raises(InvalidArgument, match="smaller"):
        OverlayPeer("n2", "198.18.0.12", "198.19.2.0/31")
    with pytest.raises(InvalidArgument):
        OverlayPeer("n2", "224.0.0.1", "198.19.2.0/24")


def test_selection_skips_itself_and_reports_conflicts() -> None:
    peers = [
        OverlayPeer("n1", "198.18.0.11", "198.19.1.0/24"),  # this node
        OverlayPeer("n2", "198.18.0.12", "198.19.2.0/24"),
        OverlayPeer("n0", "198.18.0.10", "198.19.1.0/24"),  # claims our subnet
        OverlayPeer("n9", "198.18.0.11", "198.19.9.0/24"),  # claims our underlay
        OverlayPeer("n3", "198.18.0.13", "198.19.2.0/23"),  # overlaps n2's
        OverlayPeer("n4", "198.18.0.14", "198.19.4.0/24"),
    ]
    chosen = select_remotes(LOCAL, LOCAL_NET, peers)
    assert chosen.remotes == remotes(remote(2), remote(4))
    assert len(chosen.problems) == 3
    assert any("n3" in p and "n2" in p for p in chosen.problems)


def _naive_selection(peers: list[OverlayPeer]) -> dict[Net, Remote]:
    chosen: dict[Net, Remote] = {}
    for p in sorted(peers, key=lambda p: (p.node_id, p.subnet, p.underlay)):
        net, under = Net(p.subnet), Addr(p.underlay)
        if net.overlaps(LOCAL_NET) or under == LOCAL:
            continue
        if any(net.overlaps(other) for other in chosen):
            continue
        chosen[net] = Remote(net, under)
    return chosen


peer_strategy = st.builds(
    lambda node, third, prefix, host: OverlayPeer(
        f"n{node}",
        f"198.18.0.{host}",
        str(Net(f"198.19.{third}.0/{prefix}", strict=False)),
    ),
    st.integers(0, 20),
    st.integers(0, 15),
    st.sampled_from([20, 22, 23, 24, 24, 24, 25]),
    st.integers(1, 30),
)


@given(st.lists(peer_strategy, max_size=25))
def test_selection_matches_a_naive_quadratic_version(peers: list[OverlayPeer]) -> None:
    assert select_remotes(LOCAL, LOCAL_NET, peers).remotes == _naive_selection(peers)


# ------------------------------------------------------------------------------ planning

remote_strategy = st.builds(remote, st.integers(2, 40), st.integers(1, 60))
remotes_strategy = st.lists(remote_strategy, max_size=12).map(lambda rs: remotes(*rs))
addr_strategy = st.builds(lambda k: Addr(f"198.19.{k}.0"), st.integers(0, 45))
mac_strategy = st.builds(lambda k: vtep_mac(Net(f"198.19.{k}.0/24")), st.integers(0, 45))
under_strategy = st.builds(lambda k: Addr(f"198.18.0.{k}"), st.integers(1, 60))
device_strategy = st.one_of(
    st.none(),
    st.builds(
        DeviceView,
        kind=st.sampled_from(["vxlan", "vxlan", "vxlan", "bridge"]),
        vni=st.sampled_from([4096, 4096, 4096, 1]),
        port=st.sampled_from([4789, 4789, 4789, 7789]),
        local=st.sampled_from([LOCAL, LOCAL, LOCAL, Addr("198.18.0.99"), None]),
        link=st.sampled_from([2, 2, 2, 3]),
        learning=st.sampled_from([False, False, False, True]),
        mac=st.sampled_from([SPEC.mac, SPEC.mac, "02:00:00:00:00:01"]),
        mtu=st.sampled_from([1450, 1450, 1500]),
        addresses=st.frozensets(
            st.sampled_from(
                [ipaddress.IPv4Interface("198.19.1.0/32"), ipaddress.IPv4Interface("10.9.0.1/8")]
            )
        ),
        up=st.booleans(),
    ),
)
held_strategy = st.builds(
    lambda dev, routes, neigh, fdb: KernelView(dev, routes, neigh, fdb)
    if dev is not None
    else KernelView(),
    device_strategy,
    st.dictionaries(
        st.tuples(
            st.builds(lambda k, p: Net(f"198.19.{k}.0/{p}", strict=False), st.integers(0, 45),
                      st.sampled_from([16, 24, 24, 24])),
            st.sampled_from([0, 0, 0, 100]),
        ),
        st.one_of(st.none(), addr_strategy),
        max_size=8,
    ),
    st.dictionaries(addr_strategy, st.one_of(st.none(), mac_strategy), max_size=8),
    st.dictionaries(mac_strategy, st.frozensets(under_strategy, min_size=1, max_size=3),
                    max_size=8),
)


@settings(max_examples=400)
@given(held_strategy, remotes_strategy)
def test_one_plan_converges_from_any_held_state(held: KernelView, want: dict[Net, Remote]) -> None:
    ops = plan(SPEC, want, held)
    assert simulate(held, ops) == wanted_view(SPEC, want)  # and the model never refused


@given(remotes_strategy)
def test_replanning_what_is_held_does_nothing(want: dict[Net, Remote]) -> None:
    assert plan(SPEC, want, wanted_view(SPEC, want)) == []


def _index(ops: list[Op], kind: type, key: object) -> int:
    found = [i for i, op in enumerate(ops) if isinstance(op, kind) and key in op_keys(op)]
    assert len(found) == 1, (kind, key, ops)
    return found[0]


@settings(max_examples=300)
@given(remotes_strategy, remotes_strategy)
def test_changes_touch_only_changed_remotes_in_a_safe_order(
    old: dict[Net, Remote], new: dict[Net, Remote]
) -> None:
    ops = plan(SPEC, new, wanted_view(SPEC, old))
    unchanged = [r for net, r in new.items() if old.get(net) == r]
    touched = {key for op in ops for key in op_keys(op)}
    for r in unchanged:
        assert not {("route", r.subnet), ("neigh", r.via), ("fdb", r.mac)} & touched
    kinds = [isinstance(op, DelRoute | DelNeigh | DelFdb) for op in ops]
    assert kinds == sorted(kinds, reverse=True)  # every removal before any addition
    for net, r in new.items():
        if net not in old:  # next hop resolvable before the route exists
            route = _index(ops, SetRoute, ("route", net))
            assert _index(ops, SetNeigh, ("neigh", r.via)) < route
            assert _index(ops, SetFdb, ("fdb", r.mac)) < route
        elif old[net].underlay != r.underlay:  # one atomic fdb replace, nothing else
            assert [op for op in ops if ("fdb", r.mac) in op_keys(op)] == [
                SetFdb(r.mac, r.underlay)
            ]
            assert not {("route", net), ("neigh", r.via)} & touched
    for net, r in old.items():
        if net not in new:  # the route goes first: no traffic towards a half-removed peer
            route = _index(ops, DelRoute, ("route", net))
            assert route < _index(ops, DelNeigh, ("neigh", r.via))
            assert route < _index(ops, DelFdb, ("fdb", r.mac))
    assert simulate(wanted_view(SPEC, old), ops) == wanted_view(SPEC, new)


def test_a_new_device_is_created_then_filled() -> None:
    ops = plan(SPEC, remotes(remote(2)), KernelView())
    assert [str(op) for op in ops] == [
        str(CreateDevice(SPEC)),
        "neigh replace 198.19.2.0 lladdr 0a:58:c6:13:02:00 nud permanent",
        "fdb replace 0a:58:c6:13:02:00 dst 198.18.0.12",
        "route replace 198.19.2.0/24 via 198.19.2.0 onlink",
    ]


def test_identity_changes_recreate_the_device_and_settings_change_in_place() -> None:
    held = wanted_view(SPEC, remotes(remote(2)))
    moved = DeviceSpec(**{**SPEC.__dict__, "port": 7789})
    ops = plan(moved, remotes(remote(2)), held)
    assert ops[:2] == [DeleteDevice("shoal.4096"), CreateDevice(moved)]
    assert len(ops) == 5
    bigger = DeviceSpec(**{**SPEC.__dict__, "mtu": 8950})
    assert [str(op) for op in plan(bigger, remotes(remote(2)), held)] == [
        "link set shoal.4096 mtu 8950 up"
    ]


def test_fdb_entries_with_several_destinations_are_reduced_before_replacing() -> None:
    r = remote(2)
    held = wanted_view(SPEC, remotes(r))
    held = KernelView(held.device, held.routes, held.neighbours,
                      {r.mac: frozenset({Addr("198.18.0.40"), Addr("198.18.0.41")})})
    ops = plan(SPEC, remotes(r), held)
    assert ops == [DelFdb(r.mac, Addr("198.18.0.41")), SetFdb(r.mac, r.underlay)]


def test_the_model_refuses_what_the_kernel_would() -> None:
    with pytest.raises(PlanError):
        simulate(KernelView(), [SetRoute(Net("198.19.2.0/24"), Addr("198.19.2.0"))])
    with pytest.raises(PlanError):
        simulate(wanted_view(SPEC, {}), [DelNeigh(Addr("198.19.2.0"))])
    with pytest.raises(PlanError):
        simulate(wanted_view(SPEC, {}), [CreateDevice(SPEC)])


# -------------------------------------------------------------------------------- purity

FORBIDDEN = {"asyncio", "socket", "time", "random", "os", "subprocess", "threading", "pyroute2"}


@pytest.mark.parametrize("module", ["model.py", "plan.py"])
def test_pure_modules_import_no_io(module: str) -> None:
    path = Path(overlay_model.__file__).parent / module
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    assert not names & FORBIDDEN

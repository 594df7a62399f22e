"""`Overlay` over a fake kernel (the planner's own model): what it reads, when it re-reads,
what it sends; and the executor's refusal of the initial network namespace."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

import pytest

from shoal.api.types import Node, NodeStatus
from shoal.errors import InvalidArgument
from shoal.mesh.errors import MeshError
from shoal.mesh.overlay import Overlay, OverlayPeer, peers_from_nodes
from shoal.mesh.overlay.netlink import NetlinkKernel
from shoal.mesh.overlay.plan import KernelView, Op, PlanError, SetRoute, simulate


class FakeKernel:
    """A kernel holding one `KernelView`, changed by the planner's model (which refuses
    what the kernel would). `fail_at` makes the n-th operation of the next batch fail
    after the earlier ones took effect, like a netlink error halfway."""

    def __init__(self, mtu: int = 1500) -> None:
        self.view = KernelView()
        self.mtu = mtu
        self.reads = 0
        self.batches: list[list[Op]] = []
        self.fail_at: int | None = None

    async def underlay(self, address: ipaddress.IPv4Address) -> tuple[int, int]:
        if address != ipaddress.IPv4Address("198.18.0.11"):
            raise MeshError(f"no interface holds {address}")
        return 2, self.mtu

    async def read(self, device: str) -> KernelView:
        self.reads += 1
        return self.view

    async def execute(self, device: str, ops: Sequence[Op]) -> None:
        self.batches.append(list(ops))
        for i, op in enumerate(ops):
            if i == self.fail_at:
                self.fail_at = None
                raise MeshError(f"`{op}` failed: injected")
            try:
                self.view = simulate(self.view, [op])
            except PlanError as exc:
                raise MeshError(str(exc)) from exc

    async def remove(self, device: str) -> bool:
        existed = self.view.device is not None
        self.view = KernelView()
        return existed


def peer(k: int, host: int | None = None) -> OverlayPeer:
    return OverlayPeer(f"n{k}", f"198.18.0.{host or 10 + k}", f"198.19.{k}.0/24")


ME = peer(1)


def overlay(kernel: FakeKernel, **kw: int) -> Overlay:
    return Overlay("198.18.0.11", "198.19.1.0/24", kernel=kernel, **kw)  # type: ignore[arg-type]


async def test_first_apply_creates_the_device_and_the_peers_entries() -> None:
    kernel = FakeKernel()
    ov = overlay(kernel)
    await ov.apply([ME, peer(2), peer(3)])
    dev = kernel.view.device
    assert dev is not None and dev.mac == "0a:58:c6:13:01:00" and dev.mtu == 1450
    assert ov.mtu == 1450 and ov.mac == "0a:58:c6:13:01:00"
    assert sorted(str(dst) for dst, _ in kernel.view.routes) == ["198.19.2.0/24", "198.19.3.0/24"]
    assert kernel.reads == 1


async def test_reapplying_sends_nothing_and_reads_nothing() -> None:
    kernel = FakeKernel()
    ov = overlay(kernel)
    await ov.apply([peer(2), peer(3)])
    await ov.apply([peer(3), peer(2)])
    assert kernel.batches[-1] == [] and ov.last_ops == ()
    assert kernel.reads == 1


async def test_changes_send_only_the_difference() -> None:
    kernel = FakeKernel()
    ov = overlay(kernel)
    await ov.apply([peer(k) for k in range(2, 102)])
    await ov.apply([peer(k) for k in range(2, 101)] + [peer(101, host=200)])
    assert [str(op) for op in kernel.batches[-1]] == [
        "fdb replace 0a:58:c6:13:65:00 dst 198.18.0.200"
    ]
    await ov.apply([peer(k) for k in range(3, 101)] + [peer(101, host=200)])
    assert len(kernel.batches[-1]) == 3  # route, neighbour, fdb entry of n2


async def test_a_failed_apply_is_followed_by_a_reread_and_converges() -> None:
    kernel = FakeKernel()
    ov = overlay(kernel)
    await ov.apply([peer(2)])
    kernel.fail_at = 2
    with pytest.raises(MeshError, match="injected"):
        await ov.apply([peer(2), peer(3), peer(4)])
    await ov.apply([peer(2), peer(3), peer(4)])
    assert kernel.reads == 2
    fresh = FakeKernel()
    await overlay(fresh).apply([peer(2), peer(3), peer(4)])
    assert kernel.view == fresh.view


async def test_a_new_overlay_adopts_what_the_kernel_holds() -> None:
    kernel = FakeKernel()
    await overlay(kernel).apply([peer(2), peer(3)])
    again = overlay(kernel)  # a restarted daemon
    await again.apply([peer(2), peer(3)])
    assert again.last_ops == ()
    moved = overlay(kernel, port=7789)  # another data path port: a new device
    await moved.apply([peer(2), peer(3)])
    assert str(moved.last_ops[0]) == "link del shoal.4096"
    assert kernel.view.device is not None and kernel.view.device.port == 7789


async def test_invalidate_makes_the_next_apply_repair_outside_changes() -> None:
    kernel = FakeKernel()
    ov = overlay(kernel)
    await ov.apply([peer(2), peer(3)])
    wanted = kernel.view
    kernel.view = KernelView()  # the device vanished (its underlay link was deleted)
    await ov.apply([peer(2), peer(3)])
    assert kernel.view == KernelView()  # unnoticed: nothing changed from our side
    ov.invalidate()
    await ov.apply([peer(2), peer(3)])
    assert kernel.view == wanted and kernel.reads == 2


async def test_close_removes_the_device_and_forgets_it() -> None:
    kernel = FakeKernel()
    ov = overlay(kernel)
    await ov.apply([peer(2)])
    await ov.close()
    await ov.close()
    assert kernel.view == KernelView()
    await ov.apply([peer(2)])  # usable again: re-reads, re-creates
    assert kernel.view.device is not None and kernel.reads == 2


async def test_conflicting_peers_are_skipped_not_fatal(caplog: pytest.LogCaptureFixture) -> None:
    kernel = FakeKernel()
    ov = overlay(kernel)
    await ov.apply([peer(2), OverlayPeer("n0", "198.18.0.10", "198.19.1.0/24")])
    assert [str(dst) for dst, _ in kernel.view.routes] == ["198.19.2.0/24"]
    assert "overlapping this node's" in caplog.text


async def test_an_unknown_underlay_address_is_an_error_and_changes_nothing() -> None:
    kernel = FakeKernel()
    ov = Overlay("198.18.0.77", "198.19.1.0/24", kernel=kernel)
    with pytest.raises(MeshError, match=r"198\.18\.0\.77"):
        await ov.apply([peer(2)])
    assert kernel.view == KernelView() and kernel.batches == []


@pytest.mark.parametrize(
    "kw",
    [
        {"local_underlay": "nope"},
        {"local_subnet": "198.19.1.7/24"},
        {"vni": 0},
        {"vni": 1 << 24},
        {"port": 0},
        {"device": "a-name-far-too-long"},
    ],
)
def test_bad_settings_are_refused(kw: dict[str, object]) -> None:
    args: dict[str, object] = {"local_underlay": "198.18.0.11", "local_subnet": "198.19.1.0/24"}
    with pytest.raises(InvalidArgument):
        Overlay(**{**args, **kw})  # type: ignore[arg-type]


async def test_the_executor_refuses_the_initial_netns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SHOAL_ALLOW_ROOT_NETNS", raising=False)
    kernel = NetlinkKernel(in_root=lambda: True)
    addr = ipaddress.IPv4Address("198.18.0.11")
    route = SetRoute(ipaddress.IPv4Network("198.19.2.0/24"), ipaddress.IPv4Address("198.19.2.0"))
    for call in (
        kernel.underlay(addr),
        kernel.read("shoal.4096"),
        kernel.execute("shoal.4096", [route]),
        kernel.remove("shoal.4096"),
    ):
        with pytest.raises(MeshError, match="initial network namespace"):
            await call
    with pytest.raises(MeshError, match="initial network namespace"):
        await Overlay("198.18.0.11", "198.19.1.0/24", kernel=kernel).apply([peer(2)])


def test_peers_come_from_nodes_with_a_subnet_and_an_address() -> None:
    nodes = [
        Node(id="b", subnet="198.19.2.0/24", status=NodeStatus(state="down", addr="198.18.0.12")),
        Node(id="a", subnet="198.19.1.0/24", status=NodeStatus(state="ready", addr="198.18.0.11")),
        Node(id="c", subnet="", status=NodeStatus(state="unknown", addr="198.18.0.13")),
        Node(id="d", subnet="198.19.4.0/24", status=NodeStatus(state="unknown", addr="")),
        Node(id="e", subnet="198.19.5.0/24", status=NodeStatus(state="ready", addr="bogus")),
    ]
    peers, skipped = peers_from_nodes(nodes)
    assert peers == [
        OverlayPeer("a", "198.18.0.11", "198.19.1.0/24"),
        OverlayPeer("b", "198.18.0.12", "198.19.2.0/24"),
    ]
    assert len(skipped) == 1 and "bogus" in skipped[0]

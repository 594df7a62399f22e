"""NodeNetwork follows the network view: overlay peers, gossip keys, reconcile, repair."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from shoal.api.netview import NetPeer, NetView
from shoal.gossip.node import GossipOptions
from shoal.gossip.table import EndpointEntry, EndpointTable
from shoal.mesh.recording import RecordingDataPlane
from shoal.node.mesh_sync import PortFeed
from shoal.node.network import NetFeed, NodeNetwork
from tests.polling import eventually as until
from tests.unit.fakes import RecordingOverlay

K1, K2 = b"1" * 32, b"2" * 32
ME = NetPeer("me", "198.18.0.11", "198.19.1.0/24")
OTHER = NetPeer("other", "198.18.0.12", "198.19.2.0/24")
THIRD = NetPeer("third", "198.18.0.13", "198.19.3.0/24")


class Rig:
    def __init__(self) -> None:
        self.feed = NetFeed()
        self.table = EndpointTable()
        self.overlays: list[RecordingOverlay] = []

        def factory(underlay: str, subnet: str, port: int) -> RecordingOverlay:
            self.overlays.append(RecordingOverlay(underlay, subnet, port))
            return self.overlays[-1]

        self.network = NodeNetwork(
            node_id="me",
            addr=ME.addr,
            subnet=ME.subnet,
            endpoints=self.table,
            plane=RecordingDataPlane(),  # type: ignore[arg-type]
            ports=PortFeed(),
            net=self.feed,
            gossip=GossipOptions(node_id="me", bind_host="127.0.0.1", port=0),
            overlay_factory=factory,
            reconcile_every=0.2,
            repair_every=0.5,
        )

    @property
    def overlay(self) -> RecordingOverlay:
        return self.overlays[-1]


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    r = Rig()
    await r.network.bind()
    r.network.start()
    try:
        yield r
    finally:
        await r.network.stop()


async def test_overlay_follows_the_peers_on_the_data_path_port(rig: Rig) -> None:
    assert rig.network.gossip_addr.startswith("127.0.0.1:")
    rig.feed.set(NetView(peers=(ME, OTHER), data_path_port=4790, keys=(K1,)))
    await until(lambda: rig.overlays and {p.node_id for p in rig.overlay.peers} == {"other"})
    assert rig.overlay.port == 4790 and rig.overlay.underlay == ME.addr
    rig.feed.set(NetView(peers=(ME, OTHER, THIRD), data_path_port=4790, keys=(K1,)))
    await until(lambda: {p.node_id for p in rig.overlay.peers} == {"other", "third"})
    rig.feed.set(NetView(peers=(ME, THIRD), data_path_port=4790, keys=(K1,)))
    await until(lambda: {p.node_id for p in rig.overlay.peers} == {"third"})
    assert len(rig.overlays) == 1  # one device, changed in place
    # anti-entropy: the kernel is re-read and the peers applied again, unasked
    await until(lambda: rig.overlay.invalidated >= 1)


async def test_a_peer_that_cannot_carry_vxlan_is_left_out_not_fatal(rig: Rig) -> None:
    bad = NetPeer("bad", "127.0.0.1", "198.19.9.0/24")
    rig.feed.set(NetView(peers=(ME, bad, OTHER), keys=(K1,)))
    await until(lambda: rig.overlays and {p.node_id for p in rig.overlay.peers} == {"other"})


async def test_keyring_takes_the_managers_keys_and_rotations(rig: Rig) -> None:
    ring = rig.network.gossip.keyring
    assert ring.primary not in (K1, K2)  # its own start-up key
    rig.feed.set(NetView(peers=(ME,), keys=(K1,)))
    await until(lambda: ring.keys() == [K1])
    rig.feed.set(NetView(peers=(ME,), keys=(K2, K1)))
    await until(lambda: ring.keys() == [K2, K1])  # seals with the new, still opens the old
    rig.feed.set(NetView(peers=(ME,), keys=(K2,)))
    await until(lambda: ring.keys() == [K2])


async def test_entries_the_managers_do_not_know_are_reconciled_away(rig: Rig) -> None:
    rig.table.set(EndpointEntry("svc", "known", "me", "198.19.1.2", True))
    rig.table.set(EndpointEntry("svc", "stale", "me", "198.19.1.3", True))
    rig.feed.set(NetView(peers=(ME,), keys=(K1,), live=frozenset({("me", "known")})))
    # without gossip peers nothing raced the managers' view: the grace is the table's
    await until(lambda: {e.task_id for e in rig.table.entries()} == {"known"}, timeout=10.0)

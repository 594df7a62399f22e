"""Endpoint records carry the task's overlay attachments (what every node's DNS answers)."""

from __future__ import annotations

import pytest

from shoal.gossip.codec import decode_packet, encode_packet
from shoal.gossip.endpoints import EndpointEntry, EndpointState, NetworkAddress
from shoal.gossip.errors import MalformedPacket
from shoal.gossip.messages import Packet

ENTRY = EndpointEntry(
    "svc", "task1", "node-a", "198.19.1.5", True, (), "app_back",
    (NetworkAddress("net1", "198.18.1.3", "198.18.1.2", ("back",)),
     NetworkAddress("net2", "198.18.2.3", "", ())),
)


def test_a_record_round_trips_through_a_packet_to_another_node() -> None:
    mine = EndpointState()
    mine.set_local(ENTRY)
    [record] = mine.take_changes()
    wire = encode_packet(Packet("node-a", "198.18.0.11:7946", [record]))
    other = EndpointState()
    [decoded] = decode_packet(wire).messages
    assert other.merge(decoded)  # type: ignore[arg-type]
    assert other.entries() == [ENTRY]


def test_oversized_attachment_lists_are_refused_by_the_decoder() -> None:
    mine = EndpointState()
    many = tuple(NetworkAddress(f"n{i}", "198.18.1.3") for i in range(17))
    mine.set_local(EndpointEntry("svc", "t", "node-a", "198.19.1.5", True, networks=many))
    [record] = mine.take_changes()
    with pytest.raises(MalformedPacket, match="length <= 16"):
        decode_packet(encode_packet(Packet("node-a", "198.18.0.11:7946", [record])))


def test_starting_tasks_are_never_mesh_backends() -> None:
    from shoal.gossip.table import EndpointTable
    from shoal.mesh.recording import RecordingDataPlane
    from shoal.node.mesh_sync import MeshSync, PortFeed

    table = EndpointTable()
    table.set(EndpointEntry("s", "boot", "n1", "198.19.1.5", False, starting=True))
    table.set(EndpointEntry("s", "drain", "n1", "198.19.1.6", False))
    sync = MeshSync(PortFeed(), table, RecordingDataPlane(), "n1", "198.19.1.0/24")
    assert [e.task_id for e in sync.desired().endpoints] == ["drain"]
    # the flag travels with the record
    mine = EndpointState()
    mine.set_local(EndpointEntry("s", "boot", "n1", "198.19.1.5", False, starting=True))
    [record] = mine.take_changes()
    [decoded] = decode_packet(encode_packet(Packet("n1", "198.18.0.11:7946", [record]))).messages
    other = EndpointState()
    other.merge(decoded)  # type: ignore[arg-type]
    assert other.entries()[0].starting

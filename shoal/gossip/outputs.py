"""What the gossip core hands its driver: packets to send, push-pulls to open, and
membership events (values only)."""

from __future__ import annotations

from dataclasses import dataclass

from shoal.gossip.members import MemberStatus
from shoal.gossip.messages import Packet

__all__ = ["MemberEvent", "Output", "SendPacket", "StartPushPull"]


@dataclass(frozen=True)
class SendPacket:
    addr: str  # "host:port"
    packet: Packet


@dataclass(frozen=True)
class StartPushPull:
    """Open a TCP exchange with `addr`: send `push_pull_state(join)`, merge the reply."""

    addr: str
    join: bool


Output = SendPacket | StartPushPull


@dataclass(frozen=True)
class MemberEvent:
    node_id: str
    addr: str
    status: MemberStatus
    incarnation: int
    reason: str

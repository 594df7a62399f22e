"""Why a gossip packet or stream was refused (all `InvalidArgument`: bad input, dropped)."""

from __future__ import annotations

from shoal.errors import InvalidArgument

__all__ = ["AuthenticationFailed", "GossipPacketError", "MalformedPacket"]


class GossipPacketError(InvalidArgument):
    """A packet or stream that is dropped, never acted upon."""


class AuthenticationFailed(GossipPacketError):
    """Not sealed under any key of the keyring, or altered on the way."""


class MalformedPacket(GossipPacketError):
    """Authentic but not a gossip message this version understands, or too large."""

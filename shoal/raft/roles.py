"""Roles of a Raft node and the volatile state the application is told about."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

__all__ = ["TRANSFER_CONTEXT", "CampaignType", "SoftState", "StateRole"]

TRANSFER_CONTEXT: Final = b"transfer"  # on vote requests of a leader transfer: skips the lease


class StateRole(enum.IntEnum):
    FOLLOWER = 0
    CANDIDATE = 1
    LEADER = 2
    PRE_CANDIDATE = 3


class CampaignType(enum.Enum):
    PRE_ELECTION = "pre-election"
    ELECTION = "election"
    TRANSFER = "transfer"


@dataclass(frozen=True, slots=True)
class SoftState:
    """Volatile state worth telling the application about (never persisted)."""

    lead: int
    role: StateRole

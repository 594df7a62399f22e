"""`BlobData`: a secret's or config's bytes as a node receives them (session messages).

Lives below the manager, the wire and the agent so that all three share it without cycles.
"""

from __future__ import annotations

import msgspec

__all__ = ["BlobData"]


class BlobData(msgspec.Struct, array_like=True):
    """A secret's or config's data for a node that runs a task referencing it."""

    id: str
    data: bytes

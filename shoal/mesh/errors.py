"""The mesh's one error: a data plane that could not be programmed."""

from __future__ import annotations

from shoal.errors import ShoalError

__all__ = ["MeshError"]


class MeshError(ShoalError):
    """The data plane could not be programmed; `message` carries the tool's own words."""

    status = 500

"""Published ports read from the endpoint table: a `PortSource` for a node without the
store (a worker), so its mesh opens every published port that has endpoints anywhere."""

from __future__ import annotations

from typing import Literal, cast

from shoal.gossip.table import EndpointTable
from shoal.mesh.model import PortSpec

__all__ = ["TablePorts"]


class TablePorts:
    def __init__(self, table: EndpointTable) -> None:
        self._table = table
        self._seen = table.version

    def ports(self) -> list[PortSpec]:
        return [
            PortSpec(
                service_id=sid,
                protocol=cast(Literal["tcp", "udp"], proto),
                published=published,
                target=target,
                mode="host" if mode == "host" else "ingress",
            )
            for sid, proto, published, target, mode in self._table.ports()
        ]

    async def changed(self) -> None:
        self._seen = await self._table.wait_change(self._seen)

"""`link_index`: one RTM_GETLINK by name (read-only; any namespace has `lo`)."""

from __future__ import annotations

from pyroute2 import AsyncIPRoute

from shoal.agent.exec.netsetup import link_index


async def test_link_index_finds_lo_and_returns_none_for_a_missing_link() -> None:
    async with AsyncIPRoute() as ipr:
        expected = (await ipr.link_lookup(ifname="lo"))[0]
        assert await link_index(ipr, "lo") == expected
        assert await link_index(ipr, "shoal-nolink0") is None

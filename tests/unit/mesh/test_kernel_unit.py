"""KernelDataPlane against stand-in `nft` and `conntrack` programs (no kernel is touched):
what it sends when, how it fails, and that it refuses the initial network namespace."""

from __future__ import annotations

import stat
import sys
from pathlib import Path

import pytest

from shoal.mesh import conntrack_nl, nftlib
from shoal.mesh.errors import MeshError
from shoal.mesh.kernel import KernelDataPlane, in_root_netns
from shoal.mesh.model import Endpoint, MeshDelta, MeshState, PortSpec
from shoal.mesh.recording import RecordingDataPlane

WEB = PortSpec("web", "tcp", 8080, 80, "ingress")
DNS = PortSpec("web", "udp", 53, 53, "ingress")


def mesh(*addresses: str) -> MeshState:
    eps = tuple(Endpoint("web", f"t{i}", "n1", a, True) for i, a in enumerate(addresses))
    return MeshState("n1", "198.19.1.0/24", (WEB, DNS), eps)


class Tools:
    """Shell scripts that log their input and arguments; `nft` fails while `fail` exists."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.nft = self._script("nft", 'cat >> "$D/nft.log"; echo "--" >> "$D/nft.log"\n'
                                'if [ -e "$D/fail" ]; then echo "Error: boom" >&2; exit 1; fi\n')
        # `-R -`: one deletion per stdin line (conntrack-tools' batch), logged one per line
        self.conntrack = self._script("conntrack", 'if [ "$*" = "-R -" ]; then '
                                      'cat >> "$D/conntrack.log"; echo R >> "$D/batches"; '
                                      'else echo "$*" >> "$D/conntrack.log"; fi; exit 1\n')

    def _script(self, name: str, body: str) -> str:
        path = self.root / name
        path.write_text(f'#!/bin/sh\nD="{self.root}"\n{body}')
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
        return str(path)

    def scripts(self) -> list[str]:
        log = self.root / "nft.log"
        return [s for s in log.read_text().split("--\n") if s] if log.exists() else []

    def conntrack_calls(self) -> list[str]:
        log = self.root / "conntrack.log"
        return log.read_text().splitlines() if log.exists() else []


@pytest.fixture
def tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Tools:
    monkeypatch.setenv("SHOAL_ALLOW_ROOT_NETNS", "1")  # the stand-in nft touches nothing
    return Tools(tmp_path)


async def test_first_apply_replaces_then_only_diffs(tools: Tools) -> None:
    plane = KernelDataPlane(nft=tools.nft, conntrack=tools.conntrack)
    await plane.apply(mesh("198.19.1.10", "198.19.1.11"))
    await plane.apply(mesh("198.19.1.10", "198.19.1.11"))  # same state: nothing to send
    await plane.apply(mesh("198.19.1.10"))
    first, second = tools.scripts()
    assert first.startswith("add table inet shoal\ndelete table inet shoal\n")
    assert second.startswith("flush chain inet shoal svc-tcp-8080\n")
    assert "add table" not in second
    await plane.flushed()  # the deletions run right after the transaction
    assert sorted(tools.conntrack_calls()) == [
        "-D -p tcp --state SYN_SENT --orig-port-dst 8080 --reply-src 198.19.1.11 "
        "--reply-port-src 80",
        "-D -p udp --orig-port-dst 53 --reply-src 198.19.1.11 --reply-port-src 53",
    ]
    assert (tools.root / "batches").read_text() == "R\n"  # both in one process


async def test_a_refused_batch_falls_back_to_one_call_per_deletion(tools: Tools) -> None:
    old = tools._script("conntrack-old", 'if [ "$1" = "-R" ]; then '
                        'echo "conntrack: invalid option -- R" >&2; exit 2; fi\n'
                        'echo "$*" >> "$D/conntrack.log"; exit 1\n')
    plane = KernelDataPlane(nft=tools.nft, conntrack=old)
    await plane.apply(mesh("198.19.1.10", "198.19.1.11"))
    await plane.apply(mesh("198.19.1.10"))
    await plane.flushed()
    assert len(tools.conntrack_calls()) == 2  # the two deletions, one process each


async def test_deletions_finish_before_the_next_transaction(tools: Tools) -> None:
    slow = tools._script("conntrack-slow", 'sleep 0.3; if [ "$1" = "-R" ]; then cat > '
                         '/dev/null; fi; echo done >> "$D/order"; exit 1\n')
    nft = tools._script("nft-order", 'cat > /dev/null; echo nft >> "$D/order"\n')
    plane = KernelDataPlane(nft=nft, conntrack=slow)
    await plane.apply(mesh("198.19.1.10", "198.19.1.11", "198.19.1.12"))
    await plane.apply(mesh("198.19.1.10"))  # returns with the rules in, deletions under way
    await plane.apply(mesh("198.19.1.13"))  # waits for them, then sends its transaction
    await plane.flushed()
    order = (tools.root / "order").read_text().split()
    assert order == ["nft", "nft", "done", "nft", "done"]


async def test_failure_raises_with_nft_message_and_rebuilds_next_time(tools: Tools) -> None:
    plane = KernelDataPlane(nft=tools.nft, conntrack=tools.conntrack)
    await plane.apply(mesh("198.19.1.10"))
    (tools.root / "fail").touch()
    with pytest.raises(MeshError, match="boom"):
        await plane.apply(mesh("198.19.1.11"))
    (tools.root / "fail").unlink()
    await plane.apply(mesh("198.19.1.11"))
    assert tools.scripts()[-1].startswith("add table inet shoal\ndelete table inet shoal\n")


async def test_close_deletes_the_table(tools: Tools) -> None:
    plane = KernelDataPlane(table="other", nft=tools.nft, conntrack=None)
    await plane.apply(mesh("198.19.1.10"))
    await plane.close()
    assert tools.scripts()[-1] == "add table inet other\ndelete table inet other\n"


async def test_missing_nft_is_a_mesh_error(tools: Tools) -> None:
    plane = KernelDataPlane(nft=str(tools.root / "no-such-nft"))
    with pytest.raises(MeshError, match="cannot run"):
        await plane.apply(mesh("198.19.1.10"))


async def test_refuses_the_initial_network_namespace(
    tools: Tools, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not in_root_netns():
        pytest.skip("this check needs the test to run in the initial network namespace")
    monkeypatch.delenv("SHOAL_ALLOW_ROOT_NETNS")
    plane = KernelDataPlane(nft=tools.nft)
    with pytest.raises(MeshError, match="initial network namespace"):
        await plane.apply(mesh("198.19.1.10"))
    with pytest.raises(MeshError):
        await plane.close()
    assert tools.scripts() == []


async def test_recording_plane_records_and_fails_on_demand() -> None:
    plane = RecordingDataPlane()
    await plane.apply(mesh("198.19.1.10"))
    assert plane.published() == {("tcp", 8080, 80), ("udp", 53, 53)}
    plane.fail_next()
    with pytest.raises(MeshError):
        await plane.apply(mesh())
    assert len(plane.states) == 1
    await plane.close()
    assert plane.closed and plane.published() == set()


async def test_apply_delta_sends_only_the_change_and_a_stale_base_replaces_whole(
    tools: Tools,
) -> None:
    plane = KernelDataPlane(nft=tools.nft, conntrack=tools.conntrack)
    first = mesh("198.19.1.10", "198.19.1.11")
    await plane.apply_delta(first, None)
    second = mesh("198.19.1.10")
    await plane.apply_delta(second, MeshDelta(first, frozenset({"web"})))
    await plane.apply_delta(mesh("198.19.1.12"), MeshDelta(first, frozenset({"web"})))
    whole, change, stale = tools.scripts()
    assert whole.startswith("add table inet shoal\ndelete table inet shoal\n")
    assert change.startswith("flush chain inet shoal svc-tcp-8080\n") and "table" not in change
    assert stale.startswith("add table inet shoal\ndelete table inet shoal\n")
    assert "198.19.1.12" in stale


async def test_a_failed_delta_rebuilds_whole_next_time(tools: Tools) -> None:
    plane = KernelDataPlane(nft=tools.nft, conntrack=tools.conntrack)
    first = mesh("198.19.1.10")
    await plane.apply_delta(first, None)
    (tools.root / "fail").touch()
    with pytest.raises(MeshError, match="boom"):
        await plane.apply_delta(mesh("198.19.1.11"), MeshDelta(first, frozenset({"web"})))
    (tools.root / "fail").unlink()
    await plane.apply_delta(mesh("198.19.1.11"), MeshDelta(first, frozenset({"web"})))
    assert tools.scripts()[-1].startswith("add table inet shoal\ndelete table inet shoal\n")


def test_conntrack_deletions_parse_what_the_planner_makes() -> None:
    d = conntrack_nl.parse(("-D", "-p", "tcp", "--state", "SYN_SENT", "--orig-port-dst",
                            "8080", "--reply-src", "198.19.1.11", "--reply-port-src", "80"))
    assert d == conntrack_nl.Deletion(6, 8080, True, "198.19.1.11", 80)
    assert conntrack_nl.parse(("-D", "-p", "udp", "--orig-port-dst", "53")) == (
        conntrack_nl.Deletion(17, 53))
    for bad in (("-L",), ("-D", "-p", "icmp", "--orig-port-dst", "1"),
                ("-D", "-p", "tcp", "--state", "ESTABLISHED", "--orig-port-dst", "1"),
                ("-D", "-p", "tcp", "--mark", "1", "--orig-port-dst", "1"),
                ("-D", "-p", "tcp")):
        with pytest.raises(ValueError):
            conntrack_nl.parse(bad)


async def test_without_libnftables_the_program_runs(
    tools: Tools, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(nftlib, "DEBIAN_MODULE", tmp_path / "no-such" / "nftables.py")
    monkeypatch.setitem(sys.modules, "nftables", None)  # `import nftables` fails
    plane = KernelDataPlane(nft=tools.nft, conntrack=None, library=True)
    await plane.apply(mesh("198.19.1.10"))
    assert not plane.in_process
    assert tools.scripts()[0].startswith("add table inet shoal\ndelete table inet shoal\n")

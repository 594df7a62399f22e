"""Fixtures of the integration tests: labs that always go away.

Each pytest process has its own lab tag, `lt` + its pid in 5 base-36 digits (namespaces
`shoal-lt.....-h1`, ...; a second lab of the same session adds a character:
`session_lab_tag("d")`), so concurrent test sessions on one machine never share or sweep
each other's labs, and never touch the default lab of `shoal lab`. At the start of a
session, labs of test processes that no longer exist are removed; at its end, this
session's labs are.

    lab_tag                     this session's lab tag (for a Lab of your own making)
    lab1                        a 1-node lab, `swarm init` done on h1 (module scope)
    http_get(lab, addr, port)   an HTTP GET from the client namespace (curl, short timeout)
    udp_ask(lab, addr, port)    one UDP question from the client namespace

The helpers live in shoal.lab.ask (`from shoal.lab.ask import http_get, udp_ask` works from
any test module); they are re-exported here.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator

import pytest

from shoal.lab import Lab
from shoal.lab.ask import http_get, udp_ask
from shoal.lab.cgroups import cgroup2_mount
from shoal.lab.iproute import list_netns

__all__ = ["http_get", "session_lab_tag", "udp_ask"]

_TAG_PREFIX = "lt"
_TAG_NAME = re.compile(rf"^shoal-({_TAG_PREFIX}([0-9a-z]{{5}})[0-9a-z]?)-")


def _base36(number: int, width: int = 5) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    for _ in range(width):  # 36**5 > the largest Linux pid (2**22)
        number, rest = divmod(number, 36)
        out = digits[rest] + out
    return out


def session_lab_tag(suffix: str = "", pid: int | None = None) -> str:
    """The lab tag of the test process `pid` (this one by default): `lt` + 5 base-36 digits
    of the pid, + an optional one-character `suffix` for a second lab of the same session."""
    if len(suffix) > 1:
        raise ValueError("a lab tag suffix is one character")
    return _TAG_PREFIX + _base36(os.getpid() if pid is None else pid) + suffix


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _test_labs() -> dict[str, int]:
    """Test labs that exist in any form (namespace, run dir, data dir, cgroup): tag -> pid."""
    names = [*list_netns(), *os.listdir("/run"), *os.listdir("/var/lib")]
    cgroups = cgroup2_mount()
    if cgroups.is_dir():
        names += os.listdir(cgroups)
    matches = [m for m in map(_TAG_NAME.match, names) if m is not None]
    return {m.group(1): int(m.group(2), 36) for m in matches}


@pytest.fixture(scope="session", autouse=True)
def _lab_safety_net(request: pytest.FixtureRequest) -> Iterator[None]:
    """Remove dead sessions' labs first, and this session's lab whatever happened.

    The daemons' logs (/var/lib/shoal-lt...-lab) are kept when a test failed, for a
    post-mortem, until the next session removes them.
    """
    if os.geteuid() == 0:
        for tag, pid in _test_labs().items():
            if not _alive(pid):
                Lab(tag).down(purge=True)
    yield
    if os.geteuid() == 0:
        for tag, pid in _test_labs().items():
            if pid == os.getpid():
                Lab(tag).down(purge=request.session.testsfailed == 0)


@pytest.fixture(scope="session")
def lab_tag() -> str:
    return session_lab_tag()


@pytest.fixture(scope="module")
def lab1() -> Iterator[Lab]:
    """A 1-node lab with `swarm init` done on h1; torn down after the module, also on failure."""
    lab = Lab(session_lab_tag())
    lab.down()  # a previous module's lab, if its teardown could not finish
    try:
        lab.up(nodes=1)
        yield lab
    finally:
        lab.down()

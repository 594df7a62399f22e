"""The dashboard page in headless Chromium (Debian's `chromium`, installed by
scripts/setup.sh) against an in-process manager: it renders the node, the service with its
tasks and the mesh picture with no console error."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path

import pytest

from shoal import timeouts
from shoal.observe.server import serve_observe
from tests.polling import eventually
from tests.unit.httpapi.conftest import Api

pytestmark = pytest.mark.skipif(shutil.which("chromium") is None,
                                reason="no chromium (scripts/setup.sh installs it)")

SPEC = {"Name": "web", "TaskTemplate": {"ContainerSpec": {
    "Image": "busybox", "Labels": {"shoal.runtime": "exec"}}},
    "Mode": {"Replicated": {"Replicas": 1}},
    "EndpointSpec": {"Ports": [{"Protocol": "tcp", "TargetPort": 80, "PublishedPort": 8080}]}}
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run",
         "--no-default-browser-check", "--enable-logging=stderr", "--v=0")


@pytest.fixture
async def page(api: Api) -> AsyncIterator[str]:
    async with serve_observe(api.daemon, "127.0.0.1:0") as port:
        yield f"http://127.0.0.1:{port}/"


async def start_chromium(tmp_path: Path, url: str, *args: str,
                         budget_ms: int = 3000) -> asyncio.subprocess.Process:
    profile = tmp_path / f"profile-{len(list(tmp_path.iterdir()))}"  # a fresh one each run
    # --screenshot never finishes under a virtual time budget while the page's long poll is
    # pending (Chromium 156); it takes a real-time --timeout instead
    timing = (f"--timeout={budget_ms}" if any(a.startswith("--screenshot") for a in args)
              else f"--virtual-time-budget={budget_ms}")
    return await asyncio.create_subprocess_exec(
        "chromium", *FLAGS, f"--user-data-dir={profile}", timing, *args, url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)


async def chromium(tmp_path: Path, url: str, *args: str) -> tuple[str, str]:
    return await finish(await start_chromium(tmp_path, url, *args))


async def finish(proc: asyncio.subprocess.Process) -> tuple[str, str]:
    try:
        out, err = await timeouts.wait_for(proc.communicate(), 90)
    finally:
        if proc.returncode is None:  # timed out: no browser outlives the test
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err.decode()[-2000:]
    return out.decode(), err.decode()


def console_errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines()
            if "CONSOLE" in line and ("Uncaught" in line or "Error" in line)]


async def _running(api: Api, n: int) -> bool:
    tasks = await api.get("/tasks", filters={"desired-state": ["running"]})
    return sum(1 for t in tasks if t["Status"]["State"] == "running") == n


async def test_page_shows_services_tasks_and_mesh(
        api: Api, page: str, tmp_path: Path) -> None:
    await api.call("POST", "/services/create", SPEC, expect=201)
    await eventually(partial(_running, api, 1), timeout=20)
    dom, err = await chromium(tmp_path, page, "--dump-dom")
    assert console_errors(err) == []
    assert "h1" in dom and "Leader" in dom
    assert "web.1 @h1: running" in dom and "1/1" in dom
    assert "every node :8080/tcp" in dom and "web.1 on h1 198.19." in dom
    assert "web.2" not in dom
    # following a scale live (within 2 s, no reload) on a 5-node swarm, read over DevTools:
    # test_observe_dashboard_live.py; the screenshot in docs/: tests/integration/test_observe_lab.py

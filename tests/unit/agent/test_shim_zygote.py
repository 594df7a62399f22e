"""The shim zygote's protocol, without namespaces: shims forked for a task dir, bad
requests refused, a dead zygote replaced, `close` ending it."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from pathlib import Path

import pytest

from shoal.agent.exec.shimspawn import ShimZygote, ZygoteFailed
from shoal.agent.exec.taskdir import ProcRef
from tests.polling import eventually

REPO = Path(__file__).resolve().parents[3]
ENV = {"PYTHONPATH": str(REPO), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}


def _read_all(fd: int) -> bytes:
    out = b""
    while chunk := os.read(fd, 4096):
        out += chunk
    return out


async def _spawn_bogus(zygote: ShimZygote, task_dir: str) -> tuple[int, bytes, bytes]:
    """A shim for a task dir without a config: it says why on stdout and exits 1."""
    null_in = os.open(os.devnull, os.O_RDONLY)
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    try:
        pid = await zygote.spawn(task_dir, null_in, out_w, err_w)
    finally:
        for fd in (null_in, out_w, err_w):
            os.close(fd)
    out, err = await asyncio.gather(
        asyncio.to_thread(_read_all, out_r), asyncio.to_thread(_read_all, err_r)
    )
    os.close(out_r)
    os.close(err_r)
    return pid, out, err


async def test_forks_shims_and_replaces_a_dead_zygote(tmp_path: Path) -> None:
    zygote = ShimZygote(ENV)
    task_dir = str(tmp_path / "no-task")
    try:
        pid, out, err = await _spawn_bogus(zygote, task_dir)
        first = zygote.pid
        assert first is not None and pid != first
        assert Path(f"/proc/{first}/comm").read_text().strip() == "shoal-zygote"  # for ps/top
        assert out == f"error cannot read {task_dir}/config.json\n".encode(), err
        await eventually(lambda: ProcRef.of(pid) is None)  # reaped by the zygote
        os.kill(first, signal.SIGKILL)
        await eventually(lambda: zygote.pid is None)
        pid2, out2, _ = await _spawn_bogus(zygote, task_dir)
        assert zygote.pid not in (None, first)
        assert out2 == out and pid2 != pid
    finally:
        zygote.close()
    assert zygote.pid is None


async def test_unpin_of_a_missing_pin_is_done_and_errors_are_reported(tmp_path: Path) -> None:
    zygote = ShimZygote(ENV)
    try:
        await zygote.unpin(str(tmp_path / "no-pin"), "")  # idempotent: nothing to remove
        with pytest.raises(ZygoteFailed, match="bad request"):
            await zygote.spawn("", 0, 1, 2)  # an empty task dir is not a request
    finally:
        zygote.close()


def test_the_zygote_refuses_stdin_that_is_not_its_socket() -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-S", "-m", "shoal.agent.exec.zygote"],
        stdin=subprocess.DEVNULL, env=ENV, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 2
    assert "zygote:" in done.stderr


async def test_a_closed_socket_ends_the_zygote() -> None:
    import subprocess
    import sys

    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with theirs:
        proc = subprocess.Popen(
            [sys.executable, "-S", "-m", "shoal.agent.exec.zygote"], stdin=theirs.fileno(),
            env=ENV,
        )  # fmt: skip
    ours.send(b"nonsense")
    assert ours.recv(4096).startswith(b"error bad request")
    ours.close()
    assert await asyncio.to_thread(proc.wait, 30) == 0

"""Bridging an exec's process to a hijacked connection: pipes with multiplexed frames, or a
pty with raw bytes. Each returns the process's exit code once its output is all sent."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import signal
import struct
import termios
import tty
from typing import TYPE_CHECKING

from shoal import timeouts
from shoal.httpapi.logs import frame

if TYPE_CHECKING:
    from shoal.httpapi.exec import ExecInstance

__all__ = ["bridge_pipes", "bridge_pty", "set_window"]

_CHUNK = 32 * 1024


def set_window(fd: int, height: int, width: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))


async def _pump_out(
    source: asyncio.StreamReader, writer: asyncio.StreamWriter, stream: int
) -> None:
    while chunk := await source.read(_CHUNK):
        writer.write(frame(stream, chunk))
        with contextlib.suppress(ConnectionError):
            await writer.drain()


async def _pump_in(reader: asyncio.StreamReader, sink: asyncio.StreamWriter | None) -> None:
    """Client bytes to the process's stdin; its end (the client's half-close) closes it."""
    try:
        while chunk := await reader.read(_CHUNK):
            if sink is not None:
                sink.write(chunk)
                await sink.drain()
    except (ConnectionError, BrokenPipeError):
        pass
    finally:
        if sink is not None:
            sink.close()


async def bridge_pipes(
    instance: ExecInstance, argv: list[str], reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
) -> int:
    pipe = asyncio.subprocess.PIPE
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=pipe if instance.attach_stdin else asyncio.subprocess.DEVNULL,
        stdout=pipe, stderr=pipe,
    )
    instance.pid = proc.pid
    assert proc.stdout is not None and proc.stderr is not None
    feeding = asyncio.create_task(_pump_in(reader, proc.stdin))
    try:
        await asyncio.gather(
            _pump_out(proc.stdout, writer, 1), _pump_out(proc.stderr, writer, 2)
        )
        return await proc.wait()
    finally:
        feeding.cancel()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def _read_master(master: int, writer: asyncio.StreamWriter, done: asyncio.Event) -> None:
    try:
        data = os.read(master, _CHUNK)
    except BlockingIOError:
        return
    except OSError:  # EIO: every slave end is closed
        data = b""
    if data:
        writer.write(data)
    else:
        asyncio.get_running_loop().remove_reader(master)
        done.set()


async def _feed_master(
    reader: asyncio.StreamReader, master: int, proc: asyncio.subprocess.Process
) -> None:
    """Client bytes to the pty; the client gone hangs the terminal up (SIGHUP, as a closed
    terminal does), which runc passes to the exec's process."""
    with contextlib.suppress(ConnectionError, OSError):
        while chunk := await reader.read(_CHUNK):
            view = memoryview(chunk)
            while view:
                try:
                    view = view[os.write(master, view):]
                except BlockingIOError:
                    await asyncio.sleep(0.01)
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGHUP)


async def bridge_pty(
    instance: ExecInstance, argv: list[str], reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
) -> int:
    master, slave = os.openpty()
    tty.setraw(slave)
    if instance.console_size:
        set_window(slave, *instance.console_size)
    os.set_blocking(master, False)
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=slave, stdout=slave, stderr=slave, start_new_session=True
        )
    finally:
        os.close(slave)
    instance.pid, instance.pty_master = proc.pid, master
    loop.add_reader(master, _read_master, master, writer, done)
    feeding = asyncio.create_task(_feed_master(reader, master, proc))
    try:
        code = await proc.wait()
        with contextlib.suppress(TimeoutError):
            await timeouts.wait_for(done.wait(), 2.0)
        await writer.drain()
        return code
    finally:
        feeding.cancel()
        if proc.returncode is None:  # cancelled: the server is going away
            proc.kill()
            await proc.wait()
        loop.remove_reader(master)
        instance.pty_master = None
        os.close(master)

"""What every command gets from the root group: the daemon client and the outside world.

`CliContext` is click's `ctx.obj`. The root group fills in `host` from `-H/--host`; commands
call `get_client()` for a client to that host. Everything a command would otherwise take
from the process (client construction, wall clock, monotonic clock, sleeping, TTY and
terminal width, environment) is a field, so tests pass their own `CliContext` as
`CliRunner.invoke(..., obj=CliContext(client_factory=...))` and no patching is needed.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any, Protocol

import click

from shoal.client import Client
from shoal.errors import InvalidArgument

__all__ = ["ApiClient", "CliContext", "StreamResponse", "get_cli", "pass_cli"]


class StreamResponse(Protocol):
    def iter_bytes(self) -> Iterator[bytes]: ...


class ApiClient(Protocol):
    """The part of `shoal.client.Client` the commands use."""

    def get(self, path: str, params: dict[str, Any] | None = None) -> Any: ...

    def post(
        self,
        path: str,
        body: Any = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any: ...

    def delete(self, path: str, params: dict[str, Any] | None = None) -> Any: ...

    def post_bytes(
        self, path: str, content: bytes, params: dict[str, Any] | None = None
    ) -> Any: ...

    def stream(
        self, method: str, path: str, params: dict[str, Any] | None = None
    ) -> AbstractContextManager[Any]: ...


def _default_client(host: str | None) -> ApiClient:
    try:
        return Client(host)
    except ValueError as exc:
        raise InvalidArgument(str(exc)) from exc


def _stdout_isatty() -> bool:
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False


def _term_width() -> int:
    """shutil.get_terminal_size's answer (COLUMNS, then the terminal, else 200) without
    importing shutil, which imports bz2 and lzma (issue 13: `service ls` start time)."""
    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns if columns > 0 else 200


def _utc_now() -> datetime:
    return datetime.now(UTC)


class CliContext:
    """A plain class, not a dataclass (issue 13: importing dataclasses and generating this
    class's methods was ~4 M instructions of `shoal service ls`); same fields and keywords."""

    def __init__(
        self,
        host: str | None = None,
        client_factory: Callable[[str | None], ApiClient] = _default_client,
        now: Callable[[], datetime] = _utc_now,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        isatty: Callable[[], bool] = _stdout_isatty,
        term_width: Callable[[], int] = _term_width,
        environ: dict[str, str] | None = None,
        # what `shoal daemon` runs with its DaemonOptions (None: shoal.daemon.run_daemon)
        run_daemon: Callable[[Any], None] | None = None,
        _client: ApiClient | None = None,
    ) -> None:
        self.host = host
        self.client_factory = client_factory
        self.now = now
        self.monotonic = monotonic
        self.sleep = sleep
        self.isatty = isatty
        self.term_width = term_width
        self.environ = dict(os.environ) if environ is None else environ
        self.run_daemon = run_daemon
        self._client = _client

    def __repr__(self) -> str:
        return f"CliContext(host={self.host!r})"

    def get_client(self) -> ApiClient:
        """One client per invocation, built lazily (commands that need no daemon need none)."""
        if self._client is None:
            self._client = self.client_factory(self.host)
        return self._client


def get_cli(ctx: click.Context) -> CliContext:
    obj = ctx.find_object(CliContext)
    if obj is None:
        obj = ctx.ensure_object(CliContext)
    return obj


pass_cli = click.make_pass_decorator(CliContext, ensure=True)

"""The `shoal` command: a docker-like CLI for a shoal (or any Docker swarm) daemon.

`main()` is the console entry point. The root group takes `-H/--host` ($SHOAL_HOST) into the
`CliContext` and turns every expected failure (ShoalError: daemon errors, refused flags,
an unreachable daemon; httpx transport errors) into docker's one-line message and exit
status 1, never a traceback. `whoami` and `lab` come from other packages and are imported
only when used; while they are missing or broken the command says so instead of failing
the whole CLI.

Start and exit cost (issue 13: `shoal service ls` ≤ 80 ms, most of it Python's own work):
the cyclic garbage collector is off while this module is imported (click's import and the
decorators below allocate tens of thousands of objects and no garbage; ~20 collections) and
what was built is then frozen (`gc.freeze`: module-level objects live as long as the process,
so no later collection scans them again): 15 M instructions of a 200 M `service ls`. When
the command is done `main()` ends the process with `os._exit` once stdout and stderr are
flushed, skipping the interpreter's teardown of every module (another 20 M), but only when
that teardown has nothing left to do that anyone could see: no atexit callback (logging
registers one), no thread but the main one; otherwise Python exits as usual.
"""

from __future__ import annotations

import gc

_GC_WAS_ON = gc.isenabled()
gc.disable()  # until the end of this module's import (see above)

import importlib  # noqa: E402
import sys  # noqa: E402
from typing import Any  # noqa: E402

import click  # noqa: E402

from shoal import __version__  # noqa: E402
from shoal.errors import ShoalError  # noqa: E402

__all__ = ["cli", "main"]

DEFAULT_HOST = "unix:///run/shoal/shoal.sock"  # shoal.client.DEFAULT_HOST (a test keeps them equal)

# Every command is imported when it is run (or listed by --help), not at start: `shoal
# service ls` then loads the service commands and the HTTP client, not the doctor, image,
# swarm... modules (issue 13: the CLI's start was most of its 188 ms).
COMMANDS = {
    "swarm": ("shoal.cli.swarm", "swarm"),
    "node": ("shoal.cli.node", "node"),
    "service": ("shoal.cli.service_group", "service"),
    "network": ("shoal.cli.network", "network"),
    "image": ("shoal.cli.image", "image"),
    "pull": ("shoal.cli.image", "pull"),
    "volume": ("shoal.cli.volume", "volume"),
    "info": ("shoal.cli.system", "info"),
    "version": ("shoal.cli.system", "version"),
    "daemon": ("shoal.cli.daemon", "daemon"),
    "doctor": ("shoal.cli.doctor", "doctor"),
    "events": ("shoal.cli.events", "events"),
}
# other packages' commands: while they are missing or broken the command says so
LAZY_COMMANDS = {
    "whoami": ("shoal.workloads.cli", "whoami"),
    "lab": ("shoal.lab.cli", "lab"),
}


def _load(module_name: str, attr: str) -> Any:
    loaded = getattr(importlib.import_module(module_name), attr)
    if attr == "node" and "check" not in loaded.commands:
        from shoal.cli.doctor import check

        loaded.add_command(check)
    return loaded


def _is_http_error(exc: BaseException) -> bool:
    httpx = sys.modules.get("httpx")  # loaded by whoever talked to a daemon
    return httpx is not None and isinstance(exc, httpx.HTTPError)


def _unavailable(name: str, reason: str) -> click.Command:
    def run(args: tuple[str, ...]) -> None:
        raise ShoalError(f"shoal {name} is not available: {reason}")

    return click.Command(
        name,
        callback=run,
        params=[click.Argument(["args"], nargs=-1, type=click.UNPROCESSED)],
        help=f"(not available: {reason})",
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
        add_help_option=False,
    )


class _UsageError(click.UsageError):
    """A command used wrongly: click's message, docker's exit status (1, not click's 2)."""

    exit_code = 1


class ShoalGroup(click.Group):
    """Root group: lazy subcommands and docker-style error reporting."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *COMMANDS, *LAZY_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is None and cmd_name in COMMANDS:
            command = _load(*COMMANDS[cmd_name])
            self.add_command(command, cmd_name)
        if command is not None or cmd_name not in LAZY_COMMANDS:
            return command
        module_name, attr = LAZY_COMMANDS[cmd_name]
        try:
            loaded = getattr(importlib.import_module(module_name), attr)
        except Exception as exc:  # a sibling package still being written must not break us
            return _unavailable(cmd_name, f"{type(exc).__name__}: {exc}")
        if not isinstance(loaded, click.Command):
            return _unavailable(cmd_name, f"{module_name}.{attr} is not a click command")
        return loaded

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            raise _UsageError(exc.format_message(), exc.ctx) from None
        except Exception as exc:
            if not isinstance(exc, ShoalError) and not _is_http_error(exc):
                raise
            from shoal.cli.common import echo, error_text

            echo(error_text(exc) + "\n", err=True)
            raise click.exceptions.Exit(1) from None
        except KeyboardInterrupt:
            raise click.exceptions.Exit(130) from None


@click.group(cls=ShoalGroup)
@click.option(
    "-H",
    "--host",
    envvar="SHOAL_HOST",
    metavar="HOST",
    help=f"Daemon socket to connect to (unix:///path or tcp://ip:port) [default: {DEFAULT_HOST}]",
)
@click.version_option(
    __version__, "--version", prog_name="shoal", message="%(prog)s version %(version)s"
)
@click.pass_context
def cli(ctx: click.Context, host: str | None) -> None:
    """Docker swarm mode, with its routing mesh, in Python."""
    from shoal.cli.context import CliContext

    obj = ctx.ensure_object(CliContext)
    if host:
        obj.host = host


def main() -> None:
    try:
        cli(prog_name="shoal")
    except SystemExit as exc:
        _exit_now(exc.code)
        raise


def _exit_now(code: object) -> None:
    """`os._exit(code)` when the interpreter's teardown would do nothing a user could see
    (see the module's doc); returns when it would."""
    import atexit
    import os
    import threading

    if code is None:
        code = 0
    if not isinstance(code, int) or atexit._ncallbacks() or threading.active_count() != 1:
        return
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError, AttributeError):
        return  # Python's own exit reports it, as it always did
    os._exit(code)


if _GC_WAS_ON:
    gc.freeze()  # see the module's doc
    gc.enable()

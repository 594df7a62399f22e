"""The `shoal` command: a docker-like CLI for a shoal (or any Docker swarm) daemon.

`main()` is the console entry point. The root group takes `-H/--host` ($SHOAL_HOST) into the
`CliContext` and turns every expected failure (ShoalError: daemon errors, refused flags,
an unreachable daemon; httpx transport errors) into docker's one-line message and exit
status 1, never a traceback; a flag docker's parser refuses (unknown, without its value, or
a value `FlagError` refuses) exits 125, as cobra's FlagErrorFunc does. `whoami` and `lab`
come from other packages and are imported only when used; while they are missing or broken
the command says so instead of failing the whole CLI.

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
    "secret": ("shoal.cli.secret", "secret"),
    "config": ("shoal.cli.secret", "config"),
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


_ARGV = "shoal.argv"  # the root's arguments, in its context's meta
FLAG_ERROR_STATUS = 125  # cobra's for a flag it cannot parse (docker's FlagErrorFunc)


class _FlagUsageError(click.UsageError):
    """An unknown flag or a flag without its value: docker's words and status 125."""

    exit_code = FLAG_ERROR_STATUS

    def show(self, file: Any = None) -> None:
        assert self.ctx is not None
        usage = self.ctx.get_usage().replace("Usage: ", "Usage:  ", 1)
        click.echo(
            f"{self.message}\n\n{usage}\n\nRun '{self.ctx.command_path} --help' for more "
            "information",
            err=True,
        )


def _failed_context(root: click.Context) -> click.Context:
    """The context of the command the arguments name (click raises some parse errors, e.g.
    an option without its value, without one)."""
    ctx = root
    for word in root.meta.get(_ARGV, []):
        group = ctx.command
        if isinstance(group, click.Group):
            command = group.get_command(ctx, word)
            if command is not None:
                ctx = click.Context(command, info_name=word, parent=ctx)
    return ctx


def _usage_error(exc: click.UsageError, root: click.Context) -> click.UsageError:
    if isinstance(exc, _UsageError | _FlagUsageError):
        return exc
    flag = _flag_message(exc)
    if flag is not None:
        return _FlagUsageError(flag, exc.ctx or _failed_context(root))
    return _UsageError(exc.format_message(), exc.ctx)


def _flag_message(exc: click.UsageError) -> str | None:
    """docker's message for a flag error of click's, or None if it is no flag error."""
    if isinstance(exc, click.NoSuchOption):
        name = exc.option_name
        if name.startswith("--"):
            return f"unknown flag: {name}"
        return f"unknown shorthand flag: {name[1:2]!r} in {name}"
    if isinstance(exc, click.BadOptionUsage):  # an option given without its value
        name = exc.option_name
        if name.startswith("--"):
            return f"flag needs an argument: {name}"
        return f"flag needs an argument: {name[1:2]!r} in {name}"
    if isinstance(exc, click.BadParameter) and isinstance(exc.param, click.Option):
        return exc.format_message()
    return None


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

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta[_ARGV] = list(args)
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:
            raise _usage_error(exc, ctx) from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            raise _usage_error(exc, ctx) from None
        except Exception as exc:
            if not isinstance(exc, ShoalError) and not _is_http_error(exc):
                raise
            from shoal.cli.common import echo, error_text
            from shoal.cli.opts import FlagError

            echo(error_text(exc) + "\n", err=True)
            status = FLAG_ERROR_STATUS if isinstance(exc, FlagError) else 1
            raise click.exceptions.Exit(status) from None
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

"""The flags of `service create` and `service update`, declared once, parsed like docker's.

Each flag is declared with docker's name, its shorthand, its value kind and the commands
that take it. `service_options(kind)` puts them on a click command; `collect(ctx)` returns
only the flags the user gave (docker's `flags.Changed`) with their values parsed (ports,
durations in ns, ...) or raises `FlagError` naming the flag the way docker does, before any
request is made.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import click
from click.core import ParameterSource

from shoal.cli.durations import parse_duration
from shoal.cli.opts import (
    FlagError,
    parse_cpus,
    parse_env,
    parse_int,
    parse_label,
    parse_memory,
    parse_placement_pref,
    parse_port,
    parse_uint,
    to_map,
)
from shoal.cli.service_mounts import (
    normalize_capability,
    parse_config,
    parse_mount,
    parse_secret,
    parse_sysctl,
    parse_ulimit,
)

__all__ = ["FLAGS", "Flag", "collect", "flag_label", "service_options"]

C, U, B = "create", "update", "both"


def _positive_duration(value: str) -> int:
    ns = parse_duration(value)
    if ns < 0:
        raise ValueError("duration cannot be negative")
    return ns


def _float(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise ValueError(f'strconv.ParseFloat: parsing "{value}": invalid syntax') from None


def _timeout(value: str) -> int:
    """A duration, or plain seconds."""
    try:
        return int(float(value) * 1e9)
    except ValueError:
        return _positive_duration(value)


def _attachment(value: str) -> dict[str, Any]:
    """A network attachment by name (docker resolves the name to an ID before sending)."""
    if not value:
        raise ValueError("network name cannot be empty")
    return {"Target": value}


def _shlex(value: str) -> list[str]:
    return shlex.split(value)


def _choice(*choices: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        if value not in choices:
            raise ValueError("must be one of " + ", ".join(f'"{c}"' for c in choices))
        return value

    return check


@dataclass(frozen=True)
class Flag:
    name: str
    help: str
    where: str = B
    short: str = ""
    parse: Callable[[str], Any] | None = None  # None: a boolean switch
    multiple: bool = False
    combine: Callable[[list[Any]], Any] | None = None  # how repeated values merge


def _concat(values: list[Any]) -> list[Any]:
    return [item for value in values for item in value]


_DURATION = "(ns|us|ms|s|m|h)"
FLAGS: tuple[Flag, ...] = (
    Flag("detach", "Exit immediately instead of waiting for the service to converge", B, "d"),
    Flag("quiet", "Suppress progress output", B, "q"),
    Flag("name", "Service name", C, parse=str),
    Flag("mode", 'Service mode ("replicated", "global")', C, parse=str),
    Flag("replicas", "Number of tasks", B, parse=parse_uint),
    Flag("replicas-max-per-node", "Maximum number of tasks per node (0 = unlimited)", B,
         parse=parse_uint),
    Flag("image", "Service image tag", U, parse=str),
    Flag("args", "Service command args", U, parse=_shlex),
    Flag("force", "Force update even if no changes require it", U),
    Flag("rollback", "Rollback to previous specification", U),
    Flag("label", "Service labels", C, "l", parse_label, True, to_map),
    Flag("label-add", "Add or update a service label", U, parse=parse_label, multiple=True,
         combine=to_map),
    Flag("label-rm", "Remove a label by its key", U, parse=str, multiple=True),
    Flag("container-label", "Container labels", C, parse=parse_label, multiple=True,
         combine=to_map),
    Flag("container-label-add", "Add or update a container label", U, parse=parse_label,
         multiple=True, combine=to_map),
    Flag("container-label-rm", "Remove a container label by its key", U, parse=str,
         multiple=True),
    Flag("env", "Set environment variables", C, "e", parse_env, True),
    Flag("env-add", "Add or update an environment variable", U, parse=parse_env, multiple=True),
    Flag("env-rm", "Remove an environment variable", U, parse=str, multiple=True),
    Flag("publish", "Publish a port as a node port", C, "p", parse_port, True, _concat),
    Flag("publish-add", "Add or update a published port", U, parse=parse_port, multiple=True,
         combine=_concat),
    Flag("publish-rm", "Remove a published port by its target port", U, parse=parse_port,
         multiple=True, combine=_concat),
    Flag("constraint", "Placement constraints", C, parse=str, multiple=True),
    Flag("constraint-add", "Add or update a placement constraint", U, parse=str, multiple=True),
    Flag("constraint-rm", "Remove a constraint", U, parse=str, multiple=True),
    Flag("placement-pref", "Add a placement preference", C, parse=parse_placement_pref,
         multiple=True),
    Flag("placement-pref-add", "Add a placement preference", U, parse=parse_placement_pref,
         multiple=True),
    Flag("placement-pref-rm", "Remove a placement preference", U, parse=parse_placement_pref,
         multiple=True),
    Flag("network", "Network attachments", C, parse=_attachment, multiple=True),
    Flag("network-add", "Add a network", U, parse=_attachment, multiple=True),
    Flag("network-rm", "Remove a network", U, parse=str, multiple=True),
    Flag("workdir", "Working directory inside the container", B, "w", str),
    Flag("user", "Username or UID (format: <name|uid>[:<group|gid>])", B, "u", str),
    Flag("hostname", "Container hostname", B, parse=str),
    Flag("entrypoint", "Overwrite the default ENTRYPOINT of the image", B, parse=_shlex),
    Flag("init", "Use an init inside each service container to forward signals", B),
    Flag("tty", "Allocate a pseudo-TTY", B, "t"),
    Flag("read-only", "Mount the container's root filesystem as read only", B),
    Flag("stop-signal", "Signal to stop the container", B, parse=str),
    Flag("stop-grace-period", f"Time to wait before force killing a container {_DURATION}", B,
         parse=parse_duration),
    Flag("oom-score-adj", "Tune host's OOM preferences (-1000 to 1000)", B, parse=parse_int),
    Flag("cap-add", "Add Linux capabilities", B, parse=normalize_capability, multiple=True),
    Flag("cap-drop", "Drop Linux capabilities", B, parse=normalize_capability, multiple=True),
    Flag("sysctl", "Sysctl options", C, parse=parse_sysctl, multiple=True, combine=to_map),
    Flag("sysctl-add", "Add or update a Sysctl option", U, parse=parse_sysctl, multiple=True,
         combine=to_map),
    Flag("sysctl-rm", "Remove a Sysctl option", U, parse=str, multiple=True),
    Flag("ulimit", "Ulimit options", C, parse=parse_ulimit, multiple=True),
    Flag("ulimit-add", "Add or update a ulimit option", U, parse=parse_ulimit, multiple=True),
    Flag("ulimit-rm", "Remove a ulimit option", U, parse=str, multiple=True),
    Flag("mount", "Attach a filesystem mount to the service", C, parse=parse_mount,
         multiple=True),
    Flag("mount-add", "Add or update a mount on a service", U, parse=parse_mount,
         multiple=True),
    Flag("mount-rm", "Remove a mount by its target path", U, parse=str, multiple=True),
    Flag("secret", "Specify secrets to expose to the service", C, parse=parse_secret,
         multiple=True),
    Flag("secret-add", "Add or update a secret on a service", U, parse=parse_secret,
         multiple=True),
    Flag("secret-rm", "Remove a secret", U, parse=str, multiple=True),
    Flag("config", "Specify configurations to expose to the service", C, parse=parse_config,
         multiple=True),
    Flag("config-add", "Add or update a config file on a service", U, parse=parse_config,
         multiple=True),
    Flag("config-rm", "Remove a configuration file", U, parse=str, multiple=True),
    Flag("runtime", 'Task runtime: "oci" runs the image as a container (the default), "exec" '
         "runs IMAGE as a program of the host (shoal extension: sets the label "
         "shoal.runtime=exec)", B, parse=_choice("exec", "oci")),
    Flag("limit-cpu", "Limit CPUs", B, parse=parse_cpus),
    Flag("limit-memory", "Limit Memory", B, parse=parse_memory),
    Flag("limit-pids", "Limit maximum number of processes (0 = unlimited)", B, parse=parse_int),
    Flag("reserve-cpu", "Reserve CPUs", B, parse=parse_cpus),
    Flag("reserve-memory", "Reserve Memory", B, parse=parse_memory),
    # not checked here: docker sends it as given and prints dockerd's
    # `invalid RestartCondition: "x"` (exit 1)
    Flag("restart-condition", 'Restart when condition is met ("none", "on-failure", "any")', B,
         parse=str),
    Flag("restart-delay", f"Delay between restart attempts {_DURATION}", B,
         parse=parse_duration),
    Flag("restart-max-attempts", "Maximum number of restarts before giving up", B,
         parse=parse_uint),
    Flag("restart-window", f"Window used to evaluate the restart policy {_DURATION}", B,
         parse=parse_duration),
    Flag("update-parallelism", "Maximum number of tasks updated simultaneously", B,
         parse=parse_uint),
    Flag("update-delay", f"Delay between updates {_DURATION}", B, parse=parse_duration),
    Flag("update-monitor", f"Duration after each task update to monitor for failure {_DURATION}",
         B, parse=parse_duration),
    Flag("update-failure-action", 'Action on update failure ("pause", "continue", "rollback")',
         B, parse=_choice("pause", "continue", "rollback")),
    Flag("update-max-failure-ratio", "Failure rate to tolerate during an update", B,
         parse=_float),
    Flag("update-order", 'Update order ("start-first", "stop-first")', B,
         parse=_choice("start-first", "stop-first")),
    Flag("rollback-parallelism", "Maximum number of tasks rolled back simultaneously", B,
         parse=parse_uint),
    Flag("rollback-delay", f"Delay between task rollbacks {_DURATION}", B,
         parse=parse_duration),
    Flag("rollback-monitor", f"Duration after each task rollback to monitor for failure "
         f"{_DURATION}", B, parse=parse_duration),
    Flag("rollback-failure-action", 'Action on rollback failure ("pause", "continue")', B,
         parse=_choice("pause", "continue")),
    Flag("rollback-max-failure-ratio", "Failure rate to tolerate during a rollback", B,
         parse=_float),
    Flag("rollback-order", 'Rollback order ("start-first", "stop-first")', B,
         parse=_choice("start-first", "stop-first")),
    Flag("endpoint-mode", "Endpoint mode (vip or dnsrr)", B, parse=_choice("vip", "dnsrr")),
    Flag("health-cmd", "Command to run to check health", B, parse=str),
    Flag("health-interval", "Time between running the check (ms|s|m|h)", B,
         parse=_positive_duration),
    Flag("health-timeout", "Maximum time to allow one check to run (ms|s|m|h)", B,
         parse=_positive_duration),
    Flag("health-retries", "Consecutive failures needed to report unhealthy", B,
         parse=parse_int),
    Flag("health-start-period", "Start period for the container to initialize (ms|s|m|h)", B,
         parse=_positive_duration),
    Flag("no-healthcheck", "Disable any container-specified HEALTHCHECK", B),
    Flag("no-resolve-image", "Do not query the registry to resolve image digest and supported "
         "platforms", B),
    Flag("with-registry-auth", "Send registry authentication details to swarm agents", B),
    Flag("timeout", "Give up waiting for convergence after this long (seconds or a duration; "
         "shoal extension)", B, parse=_timeout),
)  # fmt: skip


def _param(flag: Flag) -> str:
    return flag.name.replace("-", "_")


def flag_label(flag: Flag) -> str:
    """How cobra names a flag in errors: `-p, --publish` or `--name`."""
    return f"-{flag.short}, --{flag.name}" if flag.short else f"--{flag.name}"


def service_options(kind: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate a command with every flag of `kind` ("create" or "update")."""

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        for flag in reversed(FLAGS):
            if flag.where not in (B, kind):
                continue
            decls = [f"--{flag.name}", _param(flag)] + ([f"-{flag.short}"] if flag.short else [])
            if flag.parse is None:
                func = click.option(*decls, is_flag=True, help=flag.help)(func)
            else:
                func = click.option(
                    *decls, multiple=flag.multiple, help=flag.help, metavar="VALUE"
                )(func)
        return func

    return decorate


def collect(ctx: click.Context, kind: str) -> dict[str, Any]:
    """The `kind` flags given on the command line, parsed, keyed by docker's flag name."""
    given: dict[str, Any] = {}
    for flag in FLAGS:
        name = _param(flag)
        if flag.where not in (B, kind) or name not in ctx.params:
            continue
        value = ctx.params[name]
        if flag.parse is None:
            if ctx.get_parameter_source(name) is ParameterSource.COMMANDLINE:
                given[flag.name] = bool(value)
            continue
        raw = list(value) if flag.multiple else [value]
        if not raw or raw == [None]:
            continue
        parsed = []
        for item in raw:
            try:
                parsed.append(flag.parse(item))
            except ValueError as exc:
                raise FlagError(flag_label(flag), item, str(exc)) from None
        if flag.multiple:
            given[flag.name] = flag.combine(parsed) if flag.combine else parsed
        else:
            given[flag.name] = parsed[0]
    return given

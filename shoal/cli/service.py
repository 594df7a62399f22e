"""`shoal service create|update|scale|rollback|rm` (the group is shoal/cli/service_group.py).

Same calls as docker: create POSTs the spec built from the flags; update, scale and rollback
GET the service, edit (or, for rollback, keep) its whole spec and POST it back with
`?version=N`. The image is tagged `:latest` when untagged, as docker's client does. Unless
`-d`, the command then follows the convergence like docker (see progress.py).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import click

from shoal.cli.common import ErrorList, echo, error_text
from shoal.cli.context import ApiClient, CliContext, get_cli
from shoal.cli.format import image_with_tag
from shoal.cli.opts import parse_uint
from shoal.cli.progress import ProgressWriter, wait_on_service
from shoal.cli.registry_auth import registry_auth_header
from shoal.cli.service_flags import collect, service_options
from shoal.cli.spec import build_spec
from shoal.cli.spec_update import apply_update, check_update_flags
from shoal.errors import APIError, ShoalError

__all__ = ["create", "rm", "rollback", "scale", "update"]


def _tag_image(spec: dict[str, Any]) -> None:
    template = next((v for k, v in spec.items() if k.lower() == "tasktemplate"), None) or {}
    container = next((v for k, v in template.items() if k.lower() == "containerspec"), None)
    if isinstance(container, dict):
        key = next((k for k in container if k.lower() == "image"), "Image")
        if container.get(key):
            container[key] = image_with_tag(str(container[key]))


def _network_id(client: ApiClient, name: str) -> str:
    """docker resolves a network name to its ID; a daemon without /networks keeps the name."""
    try:
        found = client.get(f"/networks/{name}", params={"scope": "swarm"}) or {}
    except APIError as exc:
        if exc.status == 404 and exc.message == "page not found":
            return name
        raise
    return str(found.get("Id") or found.get("ID") or name)


def _networks(client: ApiClient, wanted: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**net, "Target": _network_id(client, net["Target"])} for net in wanted]


def _resolve_refs(client: ApiClient, refs: list[dict[str, Any]], what: str) -> list[Any]:
    """docker's ParseSecrets/ParseConfigs: one reference per target, names to IDs."""
    name_key, id_key = f"{what.title()}Name", f"{what.title()}ID"
    targets: set[str] = set()
    for ref in refs:
        if ref["File"]["Name"] in targets:
            raise ShoalError(f"duplicate {what} target for {ref[name_key]} not allowed")
        targets.add(ref["File"]["Name"])
    if not refs:
        return []
    names = sorted({ref[name_key] for ref in refs})
    found = client.get(f"/{what}s", params={"filters": {"name": names}}) or []
    ids = {o.get("Spec", {}).get("Name"): o.get("ID") for o in found}
    resolved = []
    for ref in refs:
        if ids.get(ref[name_key]) is None:
            raise ShoalError(f"{what} not found: {ref[name_key]}")
        resolved.append({**ref, id_key: ids[ref[name_key]]})
    return resolved


def _resolve_all(client: ApiClient, flags: dict[str, Any], suffix: str) -> None:
    for what in ("secret", "config"):
        if flags.get(f"{what}{suffix}"):
            flags[f"{what}{suffix}"] = _resolve_refs(client, flags[f"{what}{suffix}"], what)


def _auth_headers(spec: dict[str, Any], flags: dict[str, Any]) -> dict[str, str] | None:
    """X-Registry-Auth for the image's registry with --with-registry-auth (docker's)."""
    if not flags.get("with-registry-auth"):
        return None
    template = next((v for k, v in spec.items() if k.lower() == "tasktemplate"), None) or {}
    container: dict[str, Any] = next(
        (v for k, v in template.items() if k.lower() == "containerspec"), {}
    )
    image = next((str(v) for k, v in (container or {}).items() if k.lower() == "image"), "")
    return {"X-Registry-Auth": registry_auth_header(image)}


def _print_warnings(response: Any) -> None:
    for warning in (response or {}).get("Warnings") or []:
        echo(f"{warning}\n", err=True)


def _wait(cli: CliContext, client: ApiClient, ref: str, flags: dict[str, Any]) -> None:
    if flags.get("detach"):
        return
    write = (lambda _text: None) if flags.get("quiet") else echo
    out = ProgressWriter(write, cli.isatty(), cli.term_width())
    timeout = flags.get("timeout")
    wait_on_service(cli, client, ref, out, None if timeout is None else timeout / 1e9)


@click.command(context_settings={"allow_interspersed_args": False})
@service_options("create")
@click.argument("image")
@click.argument("args", nargs=-1, type=click.UNPROCESSED, metavar="[COMMAND] [ARG...]")
@click.pass_context
def create(ctx: click.Context, /, image: str, args: tuple[str, ...], **_: Any) -> None:
    """Create a new service."""
    cli = get_cli(ctx)
    flags = collect(ctx, "create")
    build_spec(flags, image, list(args))  # refuse contradictory flags before any request
    client = cli.get_client()
    if flags.get("network"):
        flags["network"] = _networks(client, flags["network"])
    _resolve_all(client, flags, "")
    spec = build_spec(flags, image, list(args))
    _tag_image(spec)
    response = client.post("/services/create", spec, headers=_auth_headers(spec, flags)) or {}
    _print_warnings(response)
    echo(f"{response.get('ID', '')}\n")
    _wait(cli, client, str(response.get("ID", "")), flags)


@click.command()
@service_options("update")
@click.argument("ref", metavar="SERVICE")
@click.pass_context
def update(ctx: click.Context, /, ref: str, **_: Any) -> None:
    """Update a service."""
    cli = get_cli(ctx)
    flags = collect(ctx, "update")
    rollback = flags.pop("rollback", False)
    if rollback and set(flags) - {"detach", "quiet", "timeout"}:
        raise ShoalError("other flags may not be combined with --rollback")
    check_update_flags(flags)
    client = cli.get_client()
    if flags.get("network-add"):
        flags["network-add"] = _networks(client, flags["network-add"])
    if flags.get("network-rm"):
        flags["network-rm"] = [_network_id(client, name) for name in flags["network-rm"]]
    _resolve_all(client, flags, "-add")

    def change(spec: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
        apply_update(spec, flags)
        _tag_image(spec)
        params: dict[str, Any] = {"registryAuthFrom": "spec"}
        if rollback:
            params["rollback"] = "previous"
        headers = _auth_headers(spec, flags)
        if headers:
            params.pop("registryAuthFrom")
        return params, headers or {}

    response = post_update(client, ref, change)
    _print_warnings(response)
    echo(f"{ref}\n")
    _wait(cli, client, ref, flags)


@click.command()
@click.argument("ref", metavar="SERVICE")
@click.option("-d", "--detach", is_flag=True, help="Exit immediately instead of waiting")
@click.option("-q", "--quiet", is_flag=True, help="Suppress progress output")
@click.option("--timeout", help="Give up waiting after this many seconds (shoal extension)")
@click.pass_context
def rollback(ctx: click.Context, ref: str, detach: bool, quiet: bool, timeout: str | None) -> None:
    """Revert changes to a service's configuration."""
    cli = get_cli(ctx)
    flags = _wait_flags(detach, quiet, timeout)
    client = cli.get_client()

    def change(spec: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
        _tag_image(spec)
        return {"rollback": "previous"}, {}

    response = post_update(client, ref, change)
    _print_warnings(response)
    echo(f"{ref}\n")
    _wait(cli, client, ref, flags)


def _wait_flags(detach: bool, quiet: bool, timeout: str | None) -> dict[str, Any]:
    flags: dict[str, Any] = {"detach": detach, "quiet": quiet}
    if timeout is not None:
        try:
            flags["timeout"] = int(float(timeout) * 1e9)
        except ValueError:
            raise ShoalError(f'invalid argument "{timeout}" for "--timeout" flag') from None
    return flags


@click.command()
@click.argument("specs", nargs=-1, required=True, metavar="SERVICE=REPLICAS [SERVICE=REPLICAS...]")
@click.option("-d", "--detach", is_flag=True, help="Exit immediately instead of waiting")
@click.option("--timeout", help="Give up waiting after this many seconds (shoal extension)")
@click.pass_context
def scale(ctx: click.Context, specs: tuple[str, ...], detach: bool, timeout: str | None) -> None:
    """Scale one or multiple replicated services."""
    for arg in specs:
        name, sep, count = arg.partition("=")
        if not sep or not name or not count:
            raise ShoalError(f"invalid scale specifier '{arg}'.\nSee 'shoal service scale --help'.")
    cli = get_cli(ctx)
    flags = _wait_flags(detach, False, timeout)
    client = cli.get_client()
    errors: list[str] = []
    scaled: list[str] = []
    for arg in specs:
        name, _, count = arg.partition("=")
        try:
            replicas = parse_uint(count)
        except ValueError as exc:
            errors.append(f"{name}: invalid replicas value {count}: {exc}")
            continue
        try:
            _scale_one(client, name, replicas)
        except ShoalError as exc:
            errors.append(f"{name}: {_plain(exc)}")
            continue
        echo(f"{name} scaled to {replicas}\n")
        scaled.append(name)
    for name in scaled:
        try:
            _wait(cli, client, name, flags)
        except ShoalError as exc:
            errors.append(f"{name}: {_plain(exc)}")
    if errors:
        raise ErrorList(errors)


def _plain(exc: ShoalError) -> str:
    return error_text(exc) if isinstance(exc, APIError) else exc.message


def _scale_one(client: ApiClient, name: str, replicas: int) -> None:
    def change(spec: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
        mode = spec.get("Mode") or {}
        if isinstance(mode.get("Replicated"), dict):
            mode["Replicated"]["Replicas"] = replicas
        elif isinstance(mode.get("ReplicatedJob"), dict):
            mode["ReplicatedJob"]["TotalCompletions"] = replicas
        else:
            raise ShoalError("scale can only be used with replicated or replicated-job mode")
        _tag_image(spec)
        return {}, {}

    _print_warnings(post_update(client, name, change))


_OUT_OF_SEQUENCE = "update out of sequence"
_SEQUENCE_TRIES = 5


def post_update(
    client: ApiClient,
    ref: str,
    change: Callable[[dict[str, Any]], tuple[dict[str, Any], dict[str, str]]],
) -> Any:
    """POST /services/{id}/update of the spec `change` makes of the current one (it edits
    the spec in place and returns the query and the headers), at the version read.

    The managers write a service's rollout status as its tasks are replaced, and each
    write moves its version: an update that read the service while a rollout ran met
    "update out of sequence" though nobody had changed what it changes (docker's CLI
    fails then). It is asked again on a fresh read, at most 5 times, only while the
    service's Spec and PreviousSpec are what was read; a spec someone else changed is
    still refused, as docker refuses it."""
    current = client.get(f"/services/{ref}", params={"insertDefaults": "false"})
    for attempt in range(_SEQUENCE_TRIES):
        spec = copy.deepcopy(current.get("Spec") or {})
        params, headers = change(spec)
        params = {**params, "version": (current.get("Version") or {}).get("Index", 0)}
        try:
            return client.post(
                f"/services/{current['ID']}/update", spec, params=params, headers=headers or None
            )
        except APIError as exc:
            if _OUT_OF_SEQUENCE not in exc.message or attempt == _SEQUENCE_TRIES - 1:
                raise
            fresh = client.get(f"/services/{current['ID']}", params={"insertDefaults": "false"})
            if any(fresh.get(k) != current.get(k) for k in ("Spec", "PreviousSpec")):
                raise
            current = fresh
    raise AssertionError("unreachable")


@click.command("rm")
@click.argument("refs", nargs=-1, required=True, metavar="SERVICE [SERVICE...]")
@click.pass_context
def rm(ctx: click.Context, refs: tuple[str, ...]) -> None:
    """Remove one or more services."""
    client = get_cli(ctx).get_client()
    errors = []
    for ref in refs:
        try:
            client.delete(f"/services/{ref}")
        except ShoalError as exc:
            errors.append(error_text(exc))
            continue
        echo(f"{ref}\n")
    if errors:
        raise ErrorList(errors)

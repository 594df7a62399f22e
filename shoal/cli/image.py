"""`shoal image pull|load|ls|inspect|rm` (and `shoal pull`), with docker's calls and output."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO

import click

from shoal.cli.common import ErrorList, echo, error_text, filters_param, inspect_objects
from shoal.cli.context import CliContext, pass_cli
from shoal.cli.durations import human_duration
from shoal.cli.format import Row, render, truncate_id
from shoal.errors import APIError, ShoalError

__all__ = ["IMAGE_FORMAT", "human_size", "image", "image_rows", "pull"]

IMAGE_FORMAT = "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
IMAGE_HEADERS = {
    "Repository": "REPOSITORY",
    "Tag": "TAG",
    "Digest": "DIGEST",
    "ID": "IMAGE ID",
    "CreatedSince": "CREATED",
    "CreatedAt": "CREATED AT",
    "Size": "SIZE",
}


def human_size(size: float) -> str:
    """docker's units.HumanSizeWithPrecision(size, 3): decimal units, 3 significant digits."""
    units = ["B", "kB", "MB", "GB", "TB", "PB"]
    i = 0
    while size >= 1000 and i < len(units) - 1:
        size /= 1000
        i += 1
    return f"{size:.3g}{units[i]}"


def image_rows(images: list[Mapping[str, Any]], now: float, no_trunc: bool = False) -> list[Row]:
    """One row per tag (an untagged image: one `<none>` row), newest first, as docker."""
    rows = []
    for img in sorted(images, key=lambda i: int(i.get("Created") or 0), reverse=True):
        ident = str(img.get("Id") or "")
        created = int(img.get("Created") or 0)
        tags = list(img.get("RepoTags") or []) or ["<none>:<none>"]
        for tag in tags:
            repo, _, name = tag.rpartition(":")
            rows.append(Row({
                "Repository": repo,
                "Tag": name,
                "Digest": next(iter(img.get("RepoDigests") or []), "@<none>").partition("@")[2],
                "ID": ident if no_trunc else truncate_id(ident.removeprefix("sha256:")),
                "CreatedSince": f"{human_duration(max(0.0, now - created))} ago",
                "CreatedAt": time.strftime("%Y-%m-%d %H:%M:%S +0000 UTC", time.gmtime(created)),
                "Size": human_size(int(img.get("Size") or 0)),
            }))  # fmt: skip
    return rows


@click.group()
def image() -> None:
    """Manage images (on the node the CLI talks to)."""


@click.command("pull")
@click.argument("ref", metavar="NAME[:TAG|@DIGEST]")
@click.option("-q", "--quiet", is_flag=True, help="Suppress verbose output")
@pass_cli
def pull(cli: CliContext, ref: str, quiet: bool) -> None:
    """Download an image from a registry."""
    lines: list[dict[str, Any]] = []
    with cli.get_client().stream("POST", "/images/create", params={"fromImage": ref}) as resp:
        for raw in resp.iter_lines():
            if raw.strip():
                lines.append(json.loads(raw))
    for line in lines:
        if "error" in line:
            raise ShoalError(str(line["error"]))
        if not quiet:
            prefix = f"{line['id']}: " if line.get("id") else ""
            echo(f"{prefix}{line.get('status', '')}\n")
    name = ref if ("@" in ref or ":" in ref.rpartition("/")[2]) else f"{ref}:latest"
    echo(f"{name}\n")


@image.command("load")
@click.option("-i", "--input", "path", type=click.Path(dir_okay=False, path_type=Path),
              help="Read from tar archive file, instead of STDIN")  # fmt: skip
@click.option("-q", "--quiet", is_flag=True, help="Suppress the load output")
@pass_cli
def load(cli: CliContext, path: Path | None, quiet: bool) -> None:
    """Load an image from a tar archive (docker save or OCI) or STDIN."""
    stdin: BinaryIO = sys.stdin.buffer
    try:
        content = path.read_bytes() if path is not None else stdin.read()
    except OSError as exc:
        raise ShoalError(f"open {path}: {exc.strerror}") from None
    if not content:
        raise ShoalError("requested load from stdin, but stdin is empty")
    answer = cli.get_client().post_bytes("/images/load", content, params={"quiet": quiet})
    for raw in (
        str(answer or "").splitlines() if not isinstance(answer, dict) else [json.dumps(answer)]
    ):
        if raw.strip():
            line = json.loads(raw)
            if "error" in line:
                raise ShoalError(str(line["error"]))
            echo(str(line.get("stream", "")))


@image.command("ls")
@click.option("-q", "--quiet", is_flag=True, help="Only show image IDs")
@click.option(
    "-f", "--filter", "filters", multiple=True, help="Filter output based on conditions provided"
)
@click.option("--format", "fmt", default="", help="Format output using a custom template")
@click.option("--no-trunc", is_flag=True, help="Don't truncate output")
@click.option("--digests", is_flag=True, help="Show digests")
@pass_cli
def ls(
    cli: CliContext, quiet: bool, filters: tuple[str, ...], fmt: str, no_trunc: bool, digests: bool
) -> None:
    """List images."""
    images = cli.get_client().get("/images/json", params={"filters": filters_param(filters)}) or []
    default = (
        IMAGE_FORMAT.replace("{{.Tag}}\t", "{{.Tag}}\t{{.Digest}}\t") if digests else IMAGE_FORMAT
    )
    fmt = fmt or "table"
    if quiet and fmt == "table":
        fmt = "{{.ID}}"
    echo(render(image_rows(images, cli.now().timestamp(), no_trunc), fmt, default, IMAGE_HEADERS))


@image.command()
@click.argument("refs", nargs=-1, required=True, metavar="IMAGE [IMAGE...]")
@click.option("-f", "--format", "fmt", default="", help="Format output using a custom template")
@pass_cli
def inspect(cli: CliContext, refs: tuple[str, ...], fmt: str) -> None:
    """Display detailed information on one or more images."""
    client = cli.get_client()
    inspect_objects(refs, lambda ref: client.get(f"/images/{ref}/json"), fmt)


@image.command("rm")
@click.argument("refs", nargs=-1, required=True, metavar="IMAGE [IMAGE...]")
@click.option("-f", "--force", is_flag=True, help="Force removal of the image")
@pass_cli
def rm(cli: CliContext, refs: tuple[str, ...], force: bool) -> None:
    """Remove one or more images."""
    client = cli.get_client()
    errors = []
    for ref in refs:
        try:
            for item in client.delete(f"/images/{ref}", params={"force": force}) or []:
                for key, value in item.items():
                    echo(f"{key}: {value}\n")
        except (APIError, ShoalError) as exc:
            errors.append(error_text(exc))
    if errors:
        raise ErrorList(errors)


image.add_command(pull)

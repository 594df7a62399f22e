"""`shoal service`: the group; each subcommand's module is imported when it is run."""

from __future__ import annotations

import click

from shoal.cli.lazy import LazyGroup

__all__ = ["service"]

_VIEW = "shoal.cli.service_view"
_EDIT = "shoal.cli.service"


@click.group(
    cls=LazyGroup,
    lazy={
        "ls": (_VIEW, "ls"),
        "ps": (_VIEW, "ps"),
        "inspect": (_VIEW, "inspect"),
        "logs": (_VIEW, "logs"),
        "create": (_EDIT, "create"),
        "update": (_EDIT, "update"),
        "rollback": (_EDIT, "rollback"),
        "scale": (_EDIT, "scale"),
        "rm": (_EDIT, "rm"),
    },
)
def service() -> None:
    """Manage Swarm services."""

"""What a task's program is and sees: its executable resolved on the host, its environment.

With no imported images, IMAGE names a host program, so resolution follows exec(3) rules on
the host: a name with a slash is a path (relative to the working directory), any other name
is looked up on PATH (the task's if it sets one, else the daemon's). The environment is the
agent's plus Docker's defaults for what it leaves unset (PATH, HOSTNAME, HOME).
"""

from __future__ import annotations

import os
import shutil

from shoal.errors import ShoalError

__all__ = ["DEFAULT_PATH", "TaskStartError", "program_env", "resolve_program"]

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class TaskStartError(ShoalError):
    """The task could not start; `message` is what the user sees as the task's error."""


def resolve_program(name: str, path: str, workdir: str | None) -> str:
    """Absolute path of the executable `name` names; TaskStartError in Docker's words."""
    prefix = "starting container failed: exec: "
    if "/" in name:
        full = os.path.join(workdir or "/", name)
        if not os.path.exists(full):
            raise TaskStartError(f'{prefix}"{name}": stat {name}: no such file or directory')
        if os.path.isdir(full) or not os.access(full, os.X_OK):
            raise TaskStartError(f'{prefix}"{name}": permission denied')
        return os.path.abspath(full)
    if name:
        found = shutil.which(name, path=path)
        if found is not None:
            return os.path.abspath(found)
    raise TaskStartError(f'{prefix}"{name}": executable file not found in $PATH')


def program_env(env: dict[str, str], hostname: str) -> dict[str, str]:
    out = {"PATH": DEFAULT_PATH, "HOSTNAME": hostname, "HOME": "/root"}
    out.update(env)
    return out

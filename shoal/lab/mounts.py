"""Mounts a lab's daemons leave behind: a daemon mounts each container's overlayfs root (and
its secrets tmpfs) in the host mount namespace, so a daemon killed with its lab leaves them
mounted under the lab's data dir. `unmount_below` detaches every mount below a directory,
deepest first, reading /proc/self/mountinfo; it touches nothing outside that directory."""

from __future__ import annotations

import subprocess
from pathlib import Path

__all__ = ["mounts_below", "unmount_below"]


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal (\\040 ...)."""
    return field.encode().decode("unicode_escape") if "\\" in field else field


def mounts_below(root: Path, mountinfo: str) -> list[str]:
    """The mount points strictly below `root` in a mountinfo text, deepest first."""
    base = str(root.resolve()).rstrip("/") + "/"
    points = [_unescape(line.split()[4]) for line in mountinfo.splitlines() if line.strip()]
    return sorted({p for p in points if p.startswith(base)}, key=len, reverse=True)


def unmount_below(root: Path) -> list[str]:
    """Detach (lazily) every mount below `root`; returns the mount points it detached."""
    try:
        mountinfo = Path("/proc/self/mountinfo").read_text()
    except OSError:
        return []
    done = []
    for point in mounts_below(root, mountinfo):
        if subprocess.run(["umount", "-l", point], capture_output=True).returncode == 0:
            done.append(point)
    return done

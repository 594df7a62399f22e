"""Linux namespace primitives through libc (ctypes): setns, unshare, mounts, hostname.

Stdlib only: the shim imports this module and must start fast and small.

Named network namespaces are pinned like `ip netns add` does (a bind mount of the
namespace on /run/netns/<name>), but in the *host* mount namespace: the daemon runs under
`ip netns exec`, whose private mount namespace never propagates mounts back to its parent,
so a pin made there would be invisible to `ip netns list` and to `shoal lab down`. The host
mount namespace is pid 1's, or kthreadd's when pid 1 cannot be inspected (seen in VMs whose
init is protected). Changing mount namespace needs a single-threaded process: only the shim
and the zygote's children (`zygote.py`: the `unpin` of a removed task) do it, never the daemon.
"""

from __future__ import annotations

import ctypes
import errno
import os

__all__ = [
    "CLONE_NEWNET",
    "CLONE_NEWNS",
    "CLONE_NEWUTS",
    "host_ns_path",
    "ns_inode",
    "pin_new_netns",
    "set_comm",
    "set_hostname_in_new_uts",
    "setns",
    "unpin_netns",
]

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWNET = 0x40000000
_MS_BIND = 4096
_MS_SHARED = 1 << 20
_MS_REC = 16384
_MNT_DETACH = 2
_PR_SET_NAME = 15

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"{what}: {os.strerror(code)}")


def setns(fd: int, nstype: int) -> None:
    _check(_libc.setns(fd, nstype), "setns")


def unshare(flags: int) -> None:
    _check(_libc.unshare(flags), "unshare")


def _mount(source: bytes, target: bytes, flags: int) -> int:
    return int(_libc.mount(source, target, b"none", ctypes.c_ulong(flags), None))


def ns_inode(path: str) -> int | None:
    """The inode that names a namespace, None if it cannot be inspected."""
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def host_ns_path(kind: str) -> str | None:
    """`/proc/<pid>/ns/<kind>` of the host's init process, or None if none is readable."""
    if ns_inode(f"/proc/1/ns/{kind}") is not None:
        return f"/proc/1/ns/{kind}"
    try:
        with open("/proc/2/comm") as fh:
            is_kthreadd = fh.read().strip() == "kthreadd"
    except OSError:
        is_kthreadd = False
    if is_kthreadd and ns_inode(f"/proc/2/ns/{kind}") is not None:
        return f"/proc/2/ns/{kind}"
    return None


def _share_dir(directory: bytes) -> None:
    """Make the pin directory a shared mount, as iproute2 does, so pins propagate."""
    os.makedirs(directory, mode=0o755, exist_ok=True)
    if _mount(b"", directory, _MS_SHARED | _MS_REC) == 0:
        return
    _check(_mount(directory, directory, _MS_BIND | _MS_REC), "bind netns dir")
    _check(_mount(b"", directory, _MS_SHARED | _MS_REC), "share netns dir")


def _pin_here(path: str) -> None:
    target = path.encode()
    _share_dir(os.path.dirname(target))
    try:
        os.close(os.open(target, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0))
    except FileExistsError:
        if os.path.ismount(target):
            raise
        # an empty leftover file (an unpin that could not unlink) is harmless to reuse
    _check(_mount(b"/proc/self/ns/net", target, _MS_BIND), "bind netns")


def pin_new_netns(path: str, host_mntns: str | None) -> str:
    """Move this (single-threaded) process into a new netns and pin it at `path`.

    The pin is made in the mount namespace `host_mntns` when given and different from ours;
    returns where it was made ("host" or "local"), which `unpin_netns` needs to know.
    """
    unshare(CLONE_NEWNET)
    own = os.open("/proc/self/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
    try:
        if host_mntns is None or ns_inode(host_mntns) == os.fstat(own).st_ino:
            _pin_here(path)
            return "local"
        target = os.open(host_mntns, os.O_RDONLY | os.O_CLOEXEC)
        try:
            setns(target, CLONE_NEWNS)
        finally:
            os.close(target)
        try:
            _pin_here(path)
        finally:
            setns(own, CLONE_NEWNS)  # the task must see the daemon's view of the files
        return "host"
    finally:
        os.close(own)


def _unmount_here(path: bytes) -> None:
    if _libc.umount2(path, _MNT_DETACH) != 0:
        code = ctypes.get_errno()
        if code not in (errno.EINVAL, errno.ENOENT):
            raise OSError(code, f"umount {path.decode()}: {os.strerror(code)}")


def unpin_netns(path: str, host_mntns: str | None) -> None:
    """Undo `pin_new_netns` (single-threaded callers only); idempotent."""
    target = path.encode()
    if host_mntns is not None:
        own = os.open("/proc/self/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
        ref = os.open(host_mntns, os.O_RDONLY | os.O_CLOEXEC)
        try:
            if os.fstat(ref).st_ino != os.fstat(own).st_ino:
                setns(ref, CLONE_NEWNS)
                try:
                    _unmount_here(target)
                finally:
                    setns(own, CLONE_NEWNS)
        finally:
            os.close(ref)
            os.close(own)
    _unmount_here(target)
    try:
        os.unlink(target)
    except FileNotFoundError:
        pass


def set_comm(name: str) -> None:
    """This process's name as `ps -o comm`, top and /proc/<pid>/comm show it (at most 15
    bytes): a forked shim would otherwise look like its zygote. Best effort."""
    _libc.prctl(_PR_SET_NAME, name.encode()[:15], 0, 0, 0)


def set_hostname_in_new_uts(hostname: str) -> None:
    unshare(CLONE_NEWUTS)
    name = hostname.encode()
    _check(_libc.sethostname(name, len(name)), "sethostname")

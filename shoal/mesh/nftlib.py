"""nft in-process: `nft -f -` scripts run through libnftables, without a process per apply.

The library binding is Debian's `python3-nftables` (the netfilter project's own `nftables`
module: a ctypes wrapper of libnftables.so.1's documented API, `nft_ctx_new`,
`nft_run_cmd_from_buffer`, buffered output and error). shoal's venv does not see Debian's
dist-packages, so where `import nftables` fails the module is loaded from its file there
(it imports only the standard library); `scripts/setup.sh` installs the package. A script
given to `run` is one transaction, as with `nft -f -`: all of it or nothing.

A libnftables context keeps a netlink socket of the network namespace it was made in: make
the `NftLib` in the namespace it programs. Calls block; the caller decides what may run on
the event loop (small transactions) and what goes to a thread. Not thread-safe: one call at
a time (the kernel data plane holds its lock around them).
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Any

from shoal.mesh.errors import MeshError

__all__ = ["DEBIAN_MODULE", "NftLib", "load"]

log = logging.getLogger(__name__)

DEBIAN_MODULE = Path("/usr/lib/python3/dist-packages/nftables/nftables.py")


def _module() -> Any | None:
    try:
        import nftables

        return nftables
    except ImportError:
        pass
    if not DEBIAN_MODULE.is_file():
        return None
    spec = importlib.util.spec_from_file_location("shoal_debian_nftables", DEBIAN_MODULE)
    if spec is None or spec.loader is None:
        return None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class NftLib:
    """One libnftables context (see the module docstring)."""

    def __init__(self, nft: Any) -> None:
        self._nft = nft

    def run(self, script: str) -> None:
        """Run `script` as one transaction; MeshError with nft's message if it is refused."""
        rc, out, err = self._nft.cmd(script)
        if rc != 0:
            message = (err or out or "").strip()
            log.debug("mesh: libnftables failed on:\n%s", script)
            raise MeshError(f"nft: {message or f'libnftables returned {rc}'}")


def load() -> NftLib | None:
    """A context of the current namespace, or None where the library cannot be loaded."""
    try:
        module = _module()
        if module is None:
            return None
        return NftLib(module.Nftables())
    except (OSError, AttributeError, ImportError, SyntaxError) as exc:
        log.info("mesh: libnftables not usable (%s): nft runs as a program", exc)
        return None

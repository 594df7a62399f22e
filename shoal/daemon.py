"""Entry point of `shoal daemon` (see shoal.node.daemon)."""

from shoal.node.daemon import Daemon, DaemonOptions, run_daemon

__all__ = ["Daemon", "DaemonOptions", "run_daemon"]

"""`Lab`: a multi-host shoal cluster on one machine, the demo and the test bed.

Each host hK is a network namespace on a shared fabric (see shoal.lab.fabric) with its own
`shoal daemon` (own data root, socket and cgroup; see shoal.lab.procs); `client` is a
namespace on the fabric with no daemon, an outside client. The state file records what was
built; the kernel objects are the truth for what exists (`down` sweeps by name).

Power: `stop` kills the host's cgroup (daemon, tasks, exec'd commands) and removes its
network namespace and task namespaces, as a power-off loses all kernel state; its data root
survives, like a disk. `start` rebuilds the namespace and relaunches the daemon on the same
data root. `kill_daemon` is a crash of the daemon alone: its tasks keep running.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shoal.client import Client
from shoal.errors import Conflict, InvalidArgument, NotFound, ShoalError, Unavailable
from shoal.lab import fabric, iproute, registry
from shoal.lab.cgroups import (
    cgroup2_mount,
    kill_cgroup,
    kill_task_cgroups,
    make_cgroup,
    remove_cgroup,
    sweep_task_cgroups,
)
from shoal.lab.layout import CLIENT, MAX_NODES, REGISTRY, LabLayout, host_address, host_name
from shoal.lab.mounts import unmount_below
from shoal.lab.procs import (
    DaemonArgv,
    daemon_alive,
    host_argv,
    host_env,
    launch_daemon,
    shoal_daemon_argv,
    wait_ready,
)
from shoal.lab.state import HostRecord, LabState, load_state, save_state

__all__ = ["POOL", "HostStatus", "Lab", "status_table"]

POOL = "198.19.0.0/16"  # the cluster's address pool: task networks live here


@dataclass(frozen=True)
class HostStatus:
    host: str
    netns: str
    address: str
    role: str
    state: str  # "running", "stopped", "no daemon"; ",cut" appended when its link is cut
    pid: int | None


def status_table(rows: list[HostStatus]) -> str:
    """The `lab ls` table: HOST NAMESPACE ADDRESS ROLE STATE DAEMON-PID."""
    cells = [["HOST", "NAMESPACE", "ADDRESS", "ROLE", "STATE", "DAEMON-PID"]]
    for r in rows:
        cells.append([r.host, r.netns, r.address, r.role, r.state, str(r.pid or "-")])
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    lines = ["   ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(line.rstrip() for line in lines)


class Lab:
    """One lab. `tag` "" is the lab of `shoal lab`; tests use their own tag (see layout)."""

    def __init__(
        self,
        tag: str = "",
        *,
        daemon_argv: DaemonArgv = shoal_daemon_argv,
        ready_timeout: float = 30.0,
        cgroup_root: Path | None = None,
    ) -> None:
        self.layout = LabLayout(tag, cgroup_root=cgroup_root or cgroup2_mount())
        self.daemon_argv = daemon_argv
        self.ready_timeout = ready_timeout
        self._children: dict[str, subprocess.Popen[bytes]] = {}

    # -- what exists ------------------------------------------------------------------
    def load(self) -> LabState | None:
        return load_state(self.layout.state_file)

    @property
    def state(self) -> LabState:
        state = self.load()
        if state is None:
            raise NotFound("no lab is up (run `shoal lab up`)")
        return state

    def is_up(self) -> bool:
        return self.load() is not None

    def hosts(self) -> list[str]:
        return list(self.state.hosts)

    def address(self, host: str) -> str:
        """The fabric address of `hK` or `client`."""
        return host_address(host)

    def client(self, host: str = "h1", timeout: float = 60.0) -> Client:
        """An API client of `host`'s daemon (h1's for `client`)."""
        return Client(self.layout.api_url(host), timeout=timeout)

    def _record(self, host: str) -> tuple[LabState, HostRecord]:
        state = self.state
        if host not in state.hosts:
            known = ", ".join([*state.hosts, CLIENT])
            raise InvalidArgument(f"no lab host {host!r} (hosts: {known})")
        return state, state.hosts[host]

    def _save(self, state: LabState) -> None:
        save_state(self.layout.state_file, state)

    # -- up / down --------------------------------------------------------------------
    def up(self, nodes: int = 1, managers: int = 1, *, swarm: bool = True) -> None:
        """Build the lab, start every daemon, wait for them, `swarm init` on h1.

        On failure everything is torn down again (the daemons' logs stay in the data dir).
        """
        self.build(nodes, managers)
        try:
            self._start_registry()
            for host in self.hosts():
                self._launch(host)
            for host in self.hosts():
                self.wait_ready(host)
            if swarm:
                self.init_swarm()
                for host in self.hosts()[1:]:
                    self.join(host)
        except BaseException:
            self.down()
            raise

    def build(self, nodes: int, managers: int = 1) -> None:
        """The namespaces, fabric, cgroups and state of an `up` lab, with no daemon running."""
        if not 1 <= nodes <= MAX_NODES:
            raise InvalidArgument(f"--nodes must be between 1 and {MAX_NODES}")
        if not 1 <= managers <= nodes:
            raise InvalidArgument("--managers must be between 1 and the number of nodes")
        if self.is_up():
            raise Conflict("a lab is already up: run `shoal lab down` first")
        self.down()  # debris of a lab whose state was lost
        hosts = [host_name(k) for k in range(1, nodes + 1)]
        state = LabState(nodes=nodes, managers=managers)
        for index, host in enumerate(hosts):
            state.hosts[host] = HostRecord(role="manager" if index < managers else "worker")
        try:
            self.layout.run_dir.mkdir(parents=True, exist_ok=True)
            fabric.build_fabric(self.layout)
            for host in [CLIENT, REGISTRY, *hosts]:
                make_cgroup(self.layout.cgroup(host))
                fabric.plug(self.layout, host)
            for host in hosts:
                shutil.rmtree(self.layout.data_root(host), ignore_errors=True)
            self._save(state)
        except BaseException:
            self.down()
            raise

    def down(self, purge: bool = False) -> list[str]:
        """Remove everything of the lab, with or without a state file; idempotent.

        Returns the namespaces it deleted. The data dir (daemon logs) is left for post-mortems
        unless `purge`; the next `up` clears it anyway.
        """
        state = load_state(self.layout.state_file)
        if state is not None and state.registry_pid:
            registry.stop(state.registry_pid)  # by PID; the cgroup kill below catches leftovers
        kill_cgroup(self.layout.cgroup_dir, reap=self._reap)
        # containers of daemons that died without stopping them (their task namespaces go
        # in the sweep once their processes are gone)
        kill_task_cgroups(p.name for p in self.layout.data_dir.glob("h*/oci/bundles/*"))
        deleted = fabric.sweep(self.layout)
        unmount_below(self.layout.data_dir)  # containers' roots of daemons that are gone now
        remove_cgroup(self.layout.cgroup_dir)
        sweep_task_cgroups()  # containers' cgroups the lab's killed daemons left behind
        shutil.rmtree(self.layout.run_dir, ignore_errors=True)
        if purge:
            shutil.rmtree(self.layout.data_dir, ignore_errors=True)
        self._reap()
        return deleted

    def _start_registry(self) -> None:
        """Debian's docker-registry at 198.18.0.3:5000 (plain HTTP; the daemons trust it)."""
        state = load_state(self.layout.state_file)
        assert state is not None
        state.registry_pid = registry.start_lab_registry(self.layout)
        self._save(state)

    # -- daemons ----------------------------------------------------------------------
    def _launch(self, host: str) -> None:
        state, rec = self._record(host)
        proc = launch_daemon(self.layout, host, self.daemon_argv)
        self._children[host] = proc
        rec.pid, rec.powered = proc.pid, True
        self._save(state)
        # Until its launcher has joined the cgroup, the daemon would look dead.
        deadline = time.monotonic() + 5.0
        while not daemon_alive(self.layout, host, proc.pid) and proc.poll() is None:
            if time.monotonic() > deadline:
                raise ShoalError(f"the daemon of {host} did not enter its cgroup")
            time.sleep(0.005)

    def daemon_alive(self, host: str) -> bool:
        _, rec = self._record(host)
        return daemon_alive(self.layout, host, rec.pid)

    def wait_ready(self, host: str, timeout: float | None = None) -> None:
        """Wait until `host`'s daemon answers /_ping (Unavailable with its log tail if not)."""
        wait_ready(
            self.layout,
            host,
            lambda: self.daemon_alive(host),
            self.ready_timeout if timeout is None else timeout,
        )

    def init_swarm(self) -> dict[str, Any] | str | None:
        """`swarm init` on h1, advertising 198.18.0.11, task networks from 198.19.0.0/16."""
        body = {
            "ListenAddr": "0.0.0.0:2377",
            "AdvertiseAddr": host_address("h1"),
            "DefaultAddrPool": [POOL],
            "SubnetSize": 24,
        }
        with self.client("h1") as api:
            node_id: dict[str, Any] | str | None = api.post("/swarm/init", body)
        state = self.state
        state.swarm = True
        self._save(state)
        return node_id

    def join(self, host: str) -> str:
        """Join `host` to h1's swarm with the token of its recorded role; the role it got.

        Managers join with the manager token and become Raft members (a learner first,
        a voter once caught up)."""
        _, rec = self._record(host)
        with self.client("h1") as leader:
            tokens = leader.get("/swarm")["JoinTokens"]
        body = {
            "ListenAddr": "0.0.0.0:2377",
            "AdvertiseAddr": host_address(host),
            "RemoteAddrs": [f"{host_address('h1')}:2377"],
            "JoinToken": tokens["Manager" if rec.role == "manager" else "Worker"],
        }
        with self.client(host) as api:
            api.post("/swarm/join", body)
        return rec.role

    # -- power and cables -------------------------------------------------------------
    def stop(self, host: str) -> None:
        """Power `host` off: every process on it dies, its namespaces go; idempotent."""
        state, rec = self._record(host)
        kill_cgroup(self.layout.cgroup(host), reap=self._reap)
        fabric.unplug(self.layout, host)
        remove_cgroup(self.layout.cgroup(host))
        self.layout.socket(host).unlink(missing_ok=True)
        rec.pid, rec.powered = None, False
        self._save(state)

    def start(self, host: str, wait: bool = True) -> None:
        """Power `host` on (or restart a crashed daemon) on the same data root."""
        _, rec = self._record(host)
        if daemon_alive(self.layout, host, rec.pid):
            return
        if not iproute.netns_exists(self.layout.netns(host)):
            fabric.plug(self.layout, host, cut=rec.cut)
        make_cgroup(self.layout.cgroup(host))
        self._launch(host)
        if wait:
            self.wait_ready(host)

    def kill_daemon(self, host: str, sig: int = signal.SIGKILL, timeout: float = 10.0) -> None:
        """Crash (or, with SIGTERM, stop) the daemon alone; its tasks keep running."""
        state, rec = self._record(host)
        pid = rec.pid
        if pid is not None and daemon_alive(self.layout, host, pid):
            os.kill(pid, sig)
            deadline = time.monotonic() + timeout
            while daemon_alive(self.layout, host, pid):
                self._reap()
                if time.monotonic() > deadline:
                    raise ShoalError(f"the daemon of {host} (pid {pid}) outlived {timeout:.0f}s")
                time.sleep(0.02)
        rec.pid = None
        self._save(state)

    def cut(self, host: str) -> None:
        """Take `host`'s fabric link down (it stays cut across power cycles until healed)."""
        self._set_cable(host, cut=True)

    def heal(self, host: str) -> None:
        self._set_cable(host, cut=False)

    def _set_cable(self, host: str, cut: bool) -> None:
        if host == CLIENT:
            state = self.state
            state.client_cut = cut
        else:
            state, rec = self._record(host)
            rec.cut = cut
        port = self.layout.fabric_port(host)
        if iproute.link_is_up(self.layout.fabric_ns, port) is not None:
            iproute.set_link(self.layout.fabric_ns, port, up=not cut)
        self._save(state)

    # -- running things on hosts ------------------------------------------------------
    def _check_on(self, host: str) -> None:
        if host != CLIENT:
            _, rec = self._record(host)
            if not rec.powered:
                raise Unavailable(f"lab host {host} is powered off (`shoal lab start {host}`)")
        elif not self.is_up():
            raise NotFound("no lab is up (run `shoal lab up`)")

    def exec_argv(self, host: str, argv: list[str]) -> list[str]:
        """The command line that runs `argv` on `host` (in its namespace and cgroup)."""
        self._check_on(host)
        if not argv:
            raise InvalidArgument("no command given")
        return host_argv(self.layout, host, argv)

    def exec_env(self, host: str) -> dict[str, str]:
        return host_env(self.layout, host)

    def exec(
        self,
        host: str,
        argv: list[str],
        *,
        check: bool = False,
        capture: bool = False,
        timeout: float | None = None,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run `argv` on `host` and wait; CalledProcessError if `check` and it failed."""
        return subprocess.run(
            self.exec_argv(host, argv),
            env=self.exec_env(host),
            capture_output=capture,
            text=True,
            check=check,
            timeout=timeout,
            input=input,
        )

    def popen(self, host: str, argv: list[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start `argv` on `host` in the background (killed by `stop` and `down`)."""
        kwargs.setdefault("env", self.exec_env(host))
        return subprocess.Popen(self.exec_argv(host, argv), **kwargs)

    # -- listing ----------------------------------------------------------------------
    def status(self) -> list[HostStatus]:
        state = self.state
        rows = []
        for host, rec in state.hosts.items():
            alive = daemon_alive(self.layout, host, rec.pid)
            word = "running" if alive else ("stopped" if not rec.powered else "no daemon")
            rows.append(
                HostStatus(
                    host,
                    self.layout.netns(host),
                    host_address(host),
                    rec.role,
                    word + (",cut" if rec.cut else ""),
                    rec.pid if alive else None,
                )
            )
        client_word = "running" + (",cut" if state.client_cut else "")
        rows.append(
            HostStatus(
                CLIENT, self.layout.netns(CLIENT), host_address(CLIENT), "client", client_word, None
            )
        )
        if state.registry_pid:  # docker-registry at 198.18.0.3:5000
            netns, address = self.layout.netns(REGISTRY), host_address(REGISTRY)
            rows.append(
                HostStatus(REGISTRY, netns, address, "registry", "running", state.registry_pid)
            )
        return rows

    def _reap(self) -> None:
        """wait() for our daemon children that died, so none lingers as a zombie."""
        for host, proc in list(self._children.items()):
            if proc.poll() is not None:
                del self._children[host]

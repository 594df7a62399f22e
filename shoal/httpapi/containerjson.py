"""Docker's container shapes for a task container: the `docker ps` summary and the
ContainerJSON of `docker inspect`, with Docker's human status ("Up 5 minutes")."""

from __future__ import annotations

import shlex
from typing import Any

from shoal.api.timefmt import to_epoch
from shoal.httpapi.taskcontainers import ContainerView

__all__ = ["container_json", "container_summary", "human_duration", "status_text"]


def human_duration(seconds: float) -> str:
    """Docker's go-units HumanDuration."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s < 60:
        return "1 second" if s == 1 else f"{s} seconds"
    minutes = s // 60
    if minutes < 60:
        return "About a minute" if minutes == 1 else f"{minutes} minutes"
    hours = round(s / 3600)
    if hours < 48:
        return "About an hour" if hours == 1 else f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // (24 * 7)} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // (24 * 30)} months"
    return f"{hours // (24 * 365)} years"


def status_text(view: ContainerView, now: float) -> str:
    if view.running:
        health = f" ({'health: starting' if view.health == 'starting' else view.health})"
        return f"Up {human_duration(now - to_epoch(view.started_at))}" + (
            health if view.health else ""
        )
    if view.status in ("exited", "dead"):
        ago = human_duration(now - to_epoch(view.finished_at))
        return f"Exited ({view.exit_code}) {ago} ago"
    return "Created"


def _networks(view: ContainerView) -> dict[str, Any]:
    return {
        name: {
            "IPAMConfig": {"IPv4Address": att.ip} if att.ip else None,
            "Links": None,
            "Aliases": list(att.aliases) or None,
            "MacAddress": att.mac,
            "DriverOpts": None,
            "NetworkID": att.network_id,
            "EndpointID": "",
            "Gateway": att.gateway,
            "IPAddress": att.ip,
            "IPPrefixLen": att.prefix_len,
            "IPv6Gateway": "",
            "GlobalIPv6Address": "",
            "GlobalIPv6PrefixLen": 0,
            "DNSNames": None,
        }
        for name, att in view.networks.items()
    }


def container_summary(view: ContainerView, now: float) -> dict[str, Any]:
    command = shlex.join([*view.entrypoint, *view.cmd])
    return {
        "Id": view.id,
        "Names": ["/" + view.name],
        "Image": view.image,
        "ImageID": view.image_id,
        "Command": command,
        "Created": int(to_epoch(view.created)),
        "Ports": [],
        "Labels": view.labels,
        "State": view.status,
        "Status": status_text(view, now),
        "HostConfig": {"NetworkMode": "default"},
        "NetworkSettings": {"Networks": _networks(view)},
        "Mounts": list(view.mounts),
    }


def _state(view: ContainerView) -> dict[str, Any]:
    state: dict[str, Any] = {
        "Status": view.status,
        "Running": view.running,
        "Paused": False,
        "Restarting": False,
        "OOMKilled": view.oom_killed,
        "Dead": view.status == "dead",
        "Pid": view.pid if view.running else 0,
        "ExitCode": view.exit_code,
        "Error": view.error,
        "StartedAt": view.started_at,
        "FinishedAt": view.finished_at,
    }
    if view.health:
        state["Health"] = {"Status": view.health, "FailingStreak": 0, "Log": []}
    return state


def _host_config(view: ContainerView) -> dict[str, Any]:
    return {
        "NetworkMode": "default",
        "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0},
        "AutoRemove": False,
        "CapAdd": list(view.cap_add) or None,
        "CapDrop": list(view.cap_drop) or None,
        "Init": view.init,
        "ReadonlyRootfs": view.readonly_rootfs,
        "Memory": view.memory,
        "NanoCpus": view.nano_cpus,
        "PidsLimit": view.pids_limit or None,
        "Mounts": None,
        "Privileged": False,
        "LogConfig": {"Type": "json-file", "Config": {}},
    }


def _config(view: ContainerView) -> dict[str, Any]:
    return {
        "Hostname": view.hostname,
        "Domainname": "",
        "User": view.user,
        "AttachStdin": False,
        "AttachStdout": False,
        "AttachStderr": False,
        "Tty": False,
        "OpenStdin": False,
        "StdinOnce": False,
        "Env": list(view.env) or None,
        "Cmd": list(view.cmd) or None,
        "Image": view.image,
        "Volumes": None,
        "WorkingDir": view.working_dir,
        "Entrypoint": list(view.entrypoint) or None,
        "OnBuild": None,
        "Labels": view.labels,
        "StopSignal": view.stop_signal or None,
    }


def container_json(view: ContainerView) -> dict[str, Any]:
    argv = [*view.entrypoint, *view.cmd]
    return {
        "Id": view.id,
        "Created": view.created,
        "Path": argv[0] if argv else "",
        "Args": argv[1:],
        "State": _state(view),
        "Image": view.image_id,
        "ResolvConfPath": "",
        "HostnamePath": "",
        "HostsPath": "",
        "LogPath": str(view.log_path or ""),
        "Name": "/" + view.name,
        "RestartCount": 0,
        "Driver": "overlay",
        "Platform": "linux",
        "MountLabel": "",
        "ProcessLabel": "",
        "AppArmorProfile": "",
        "ExecIDs": None,
        "HostConfig": _host_config(view),
        "GraphDriver": {"Name": "overlay", "Data": None},
        "Mounts": list(view.mounts),
        "Config": _config(view),
        "NetworkSettings": {
            "Bridge": "",
            "SandboxID": "",
            "SandboxKey": "",
            "Ports": {},
            "Networks": _networks(view),
        },
    }

"""/_ping, /version, /info, and the registry lookup the docker CLI makes before a create."""

from __future__ import annotations

import os
import platform

from aiohttp import web

from shoal import __version__
from shoal.httpapi.common import API_VERSION, MIN_API_VERSION, daemon_of, json_response, route
from shoal.httpapi.node_api import LocalNode

__all__ = ["add_routes", "swarm_info"]


def _swarm_header(daemon: LocalNode) -> str:
    if daemon.swarm is None:
        return "inactive"
    return "active/manager" if daemon.is_manager else "active/worker"


async def ping(request: web.Request) -> web.StreamResponse:
    headers = {
        "Api-Version": API_VERSION,
        "Swarm": _swarm_header(daemon_of(request)),
        "Cache-Control": "no-cache, no-store, must-revalidate",
        "Pragma": "no-cache",
        "Content-Type": "text/plain; charset=utf-8",
    }
    body = b"" if request.method == "HEAD" else b"OK"
    return web.Response(body=body, headers=headers)


async def version(request: web.Request) -> web.StreamResponse:
    uname = platform.uname()
    return json_response(
        {
            "Platform": {"Name": "shoal"},
            "Components": [
                {
                    "Name": "Engine",
                    "Version": __version__,
                    "Details": {
                        "ApiVersion": API_VERSION,
                        "MinAPIVersion": MIN_API_VERSION,
                        "Os": "linux",
                        "Arch": "amd64",
                    },
                }
            ],
            "Version": __version__,
            "ApiVersion": API_VERSION,
            "MinAPIVersion": MIN_API_VERSION,
            "GitCommit": "shoal",
            "GoVersion": f"python{platform.python_version()}",
            "Os": "linux",
            "Arch": "amd64",
            "KernelVersion": uname.release,
        }
    )


def swarm_info(daemon: LocalNode) -> dict[str, object]:
    if daemon.swarm is None:
        return {
            "NodeID": "",
            "NodeAddr": "",
            "LocalNodeState": "inactive",
            "ControlAvailable": False,
            "Error": "",
            "RemoteManagers": None,
        }
    if daemon.store is None:  # a worker: no cluster state, only who its managers are
        return {
            "NodeID": daemon.swarm.node_id,
            "NodeAddr": daemon.swarm.addr,
            "LocalNodeState": "active",
            "ControlAvailable": False,
            "Error": "",
            "RemoteManagers": [{"NodeID": "", "Addr": m} for m in daemon.swarm.managers],
        }
    view = daemon.store.view()
    nodes = view.nodes.list()
    managers = [n for n in nodes if n.spec.role == "manager"]
    clusters = view.clusters.list()
    cluster = None
    if clusters:
        c = clusters[0]
        cluster = {
            "ID": c.id,
            "Version": c.version,
            "CreatedAt": c.created_at,
            "UpdatedAt": c.updated_at,
            "Spec": c.spec,
            "TLSInfo": c.tls_info,
            "RootRotationInProgress": False,
            "DataPathPort": c.data_path_port,
            "DefaultAddrPool": c.default_addr_pool,
            "SubnetSize": c.subnet_size,
        }
    return {
        "NodeID": daemon.swarm.node_id,
        "NodeAddr": daemon.swarm.addr,
        "LocalNodeState": "active",
        "ControlAvailable": True,
        "Error": "",
        "RemoteManagers": [
            {"NodeID": m.id, "Addr": m.manager_status.addr if m.manager_status else ""}
            for m in managers
        ],
        "Nodes": len(nodes),
        "Managers": len(managers),
        "Cluster": cluster,
    }


async def info(request: web.Request) -> web.StreamResponse:
    daemon = daemon_of(request)
    uname = platform.uname()
    running = 0
    tasks = 0
    if daemon.store is not None and daemon.swarm is not None:
        node_id = daemon.swarm.node_id
        mine = daemon.store.view().tasks.find(lambda t: t.node_id == node_id)
        tasks = len(mine)
        running = sum(1 for t in mine if t.status.state == "running")
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        mem = 0
    return json_response(
        {
            "ID": daemon.swarm.node_id if daemon.swarm else "",
            "Containers": tasks,
            "ContainersRunning": running,
            "ContainersPaused": 0,
            "ContainersStopped": tasks - running,
            "Images": 0,
            "Driver": "exec",
            "Name": daemon.hostname,
            "ServerVersion": __version__,
            "OperatingSystem": "shoal (exec runtime)",
            "OSType": "linux",
            "Architecture": uname.machine,
            "KernelVersion": uname.release,
            "NCPU": os.cpu_count() or 1,
            "MemTotal": mem,
            "DockerRootDir": str(daemon.root),
            "Debug": daemon.opts.debug,
            "Swarm": swarm_info(daemon),
            "SecurityOptions": [],
            "Warnings": None,
        }
    )


def add_routes(router: web.UrlDispatcher) -> None:
    route(router, "GET", "/_ping", ping)
    route(router, "HEAD", "/_ping", ping)
    route(router, "GET", "/version", version)
    route(router, "GET", "/info", info)
    # GET /distribution/{name}/json lives in images.py

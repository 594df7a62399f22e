"""/configs: list, create, inspect, update (Labels only), remove — the secrets' handlers with
the config rules; unlike a secret's, a config's `Data` is returned."""

from __future__ import annotations

from aiohttp import web

from shoal.api.types import ConfigSpec
from shoal.httpapi.secrets import add_blob_routes
from shoal.manager.controlapi.configs import CONFIGS

__all__ = ["add_routes"]


def add_routes(router: web.UrlDispatcher) -> None:
    add_blob_routes(router, CONFIGS, ConfigSpec)

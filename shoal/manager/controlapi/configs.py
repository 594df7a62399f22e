"""Configs: the same rules as secrets (see `secrets.py`), with a larger size limit, data that
may be white space, references that may target the runtime, and data the API returns."""

from __future__ import annotations

from shoal.api.types import Config, ConfigSpec
from shoal.manager.controlapi.secrets import BlobKind, create_blob, remove_blob, update_blob
from shoal.manager.state.store import Store

__all__ = ["CONFIGS", "create_config", "remove_config", "update_config"]

CONFIGS = BlobKind("config", 1000 * 1024, False, Config, "configs", "ConfigID", "ConfigName")


async def create_config(store: Store, spec: ConfigSpec) -> Config:
    obj = await create_blob(store, CONFIGS, spec)
    assert isinstance(obj, Config)
    return obj


async def update_config(store: Store, ref: str, version: int | None, spec: ConfigSpec) -> Config:
    obj = await update_blob(store, CONFIGS, ref, version, spec)
    assert isinstance(obj, Config)
    return obj


async def remove_config(store: Store, ref: str) -> None:
    await remove_blob(store, CONFIGS, ref)

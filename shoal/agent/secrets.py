"""The secrets, configs and registry credentials this node was handed: in memory only.

`AssignedSecrets` is what the runtime reads a task's secret and config files from (the
runtime's `SecretSource` protocol: `get_secret(id)`, `get_config(id)`) and the credentials
an image pull of a service uses (`registry_auth(service_id)`). The session replaces its
whole content from every message of the dispatcher, which holds exactly what the node's
tasks that have not ended reference: what is no longer sent is forgotten at once. Nothing
is ever written to disk; secret files themselves live on a tmpfs the runtime mounts.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping

from shoal.api.blobs import BlobData
from shoal.cluster.wire import SessionMessage
from shoal.errors import NotFound

__all__ = ["AssignedSecrets"]


class AssignedSecrets:
    def __init__(self) -> None:
        self._secrets: dict[str, bytes] = {}
        self._configs: dict[str, bytes] = {}
        self._auth: dict[str, str] = {}

    def set(
        self,
        secrets: Iterable[BlobData],
        configs: Iterable[BlobData],
        registry_auth: Mapping[str, str] | None = None,
    ) -> None:
        """Replace everything held with what the dispatcher sent last."""
        self._secrets = {b.id: bytes(b.data) for b in secrets}
        self._configs = {b.id: bytes(b.data) for b in configs}
        self._auth = dict(registry_auth or {})

    def take(self, message: SessionMessage) -> None:
        self.set(message.secrets, message.configs, message.registry_auth)

    def get_secret(self, secret_id: str) -> bytes:
        try:
            return self._secrets[secret_id]
        except KeyError:
            raise NotFound(f"secret {secret_id} is not assigned to this node") from None

    def get_config(self, config_id: str) -> bytes:
        try:
            return self._configs[config_id]
        except KeyError:
            raise NotFound(f"config {config_id} is not assigned to this node") from None

    def registry_auth(self, service_id: str) -> bytes | None:
        """The JSON of the service's X-Registry-Auth (docker's AuthConfig), or None; decode
        it as the image store's RegistryAuth."""
        encoded = self._auth.get(service_id)
        if not encoded:
            return None
        try:
            return base64.urlsafe_b64decode((encoded + "=" * (-len(encoded) % 4)).encode())
        except (ValueError, binascii.Error):
            return None

    def held(self) -> tuple[frozenset[str], frozenset[str]]:
        """IDs of the secrets and configs held now (for tests and `shoal doctor`)."""
        return frozenset(self._secrets), frozenset(self._configs)

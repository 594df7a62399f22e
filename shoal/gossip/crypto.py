"""The cluster keyring: AES-GCM encryption and authentication of every gossip byte.

A sealed frame is `version (1) | key id (4) | nonce (12) | ciphertext | tag (16)`: 33 bytes
of overhead. The key id (the first 4 bytes of the key's SHA-256) picks the key to open a
frame with, so a node holding several keys tries one. The header and a label saying which
channel the frame belongs to ("udp" or "tcp") are authenticated too, so a frame cannot be
replayed from one channel into the other.

Rotation, as the managers drive it: `install(new)` on every node (now accepted), then
`use(new)` (now sealing with it; the old key is still accepted), then `remove(old)`. Nonces
are random: with 96 bits, a key seals billions of frames before a collision is plausible,
far beyond a rotation period.
"""

from __future__ import annotations

import hashlib
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from shoal.errors import InvalidArgument
from shoal.gossip.errors import AuthenticationFailed

__all__ = ["OVERHEAD", "Keyring"]

_VERSION = 1
_HEADER = 1 + 4 + 12
OVERHEAD = _HEADER + 16


def _key_id(key: bytes) -> bytes:
    return hashlib.sha256(key).digest()[:4]


class Keyring:
    def __init__(self, primary: bytes, others: list[bytes] | None = None) -> None:
        self._keys: dict[bytes, tuple[bytes, AESGCM]] = {}
        self._primary = b""
        for key in [primary, *(others or [])]:
            self.install(key)
        self.use(primary)

    @property
    def primary(self) -> bytes:
        return self._keys[self._primary][0]

    def keys(self) -> list[bytes]:
        """Every key accepted, the primary first."""
        return [self.primary] + [k for i, (k, _) in self._keys.items() if i != self._primary]

    def install(self, key: bytes) -> None:
        if len(key) not in (16, 24, 32):
            raise InvalidArgument("a gossip key must be 16, 24 or 32 bytes (AES-128/192/256)")
        kid = _key_id(key)
        if kid in self._keys and self._keys[kid][0] != key:
            raise InvalidArgument("two gossip keys share a key id; generate another key")
        self._keys[kid] = (key, AESGCM(key))

    def use(self, key: bytes) -> None:
        """Seal with `key` from now on (it must be installed)."""
        kid = _key_id(key)
        if kid not in self._keys or self._keys[kid][0] != key:
            raise InvalidArgument("the gossip key to use is not installed")
        self._primary = kid

    def remove(self, key: bytes) -> None:
        kid = _key_id(key)
        if kid == self._primary:
            raise InvalidArgument("the primary gossip key cannot be removed; use another first")
        self._keys.pop(kid, None)

    def seal(self, plaintext: bytes, label: bytes) -> bytes:
        header = bytes([_VERSION]) + self._primary + os.urandom(12)
        aead = self._keys[self._primary][1]
        return header + aead.encrypt(header[5:], plaintext, header + label)

    def open(self, frame: bytes, label: bytes) -> bytes:
        """The plaintext of `frame`, or AuthenticationFailed."""
        if len(frame) < OVERHEAD or frame[0] != _VERSION:
            raise AuthenticationFailed("not a sealed gossip frame")
        header = frame[:_HEADER]
        found = self._keys.get(header[1:5])
        if found is None:
            raise AuthenticationFailed("sealed under a key this node does not hold")
        try:
            return found[1].decrypt(header[5:], frame[_HEADER:], header + label)
        except InvalidTag:
            raise AuthenticationFailed("gossip frame failed authentication") from None

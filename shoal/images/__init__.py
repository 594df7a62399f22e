"""Images: a per-node content store of OCI images, pulled from registries or loaded from
archives, each unpacked once into a read-only root filesystem.

Role: the runtime asks `ImageStore.pull(ref)` for a task's image and runs the container on an
overlayfs whose lower dir is `LocalImage.rootfs`; the Docker API's /images and /distribution
routes and `shoal image` are the other users.

Invariants:
- Content addressed: an image is known by its ID, `sha256:<digest of its config>`; its root
  filesystem is `<root>/rootfs/<hex>`, its record `<root>/images/<hex>.json`. Tags and repo
  digests live in the records only.
- Nothing half-imported: a pull or a load works in `<root>/tmp/<random>` (skopeo into an OCI
  layout, every blob's digest checked, umoci unpacks the layers, whiteouts included) and
  only then renames the root filesystem into place and writes the record (write + rename).
  A failure at any step leaves the store as it was.
- A rootfs is never written to after its rename; removal renames it away before deleting.
- Pulls of the same reference run once: concurrent callers share the one pull.
- Registries are spoken to only through skopeo (Registry HTTP API v2, token and basic auth,
  manifest lists resolved to linux/amd64); plain HTTP only for `insecure_registries`.
- Errors are Docker's words (`ImagePullError`, `NotFound("No such image: X")`, conflicts).
"""

from shoal.images.models import (
    ImageConfig,
    ImagePullError,
    ImageRecord,
    LocalImage,
    RegistryAuth,
    decode_registry_auth,
)
from shoal.images.reference import Reference, parse_reference
from shoal.images.store import Distribution, ImageStore, InUse, distribution

__all__ = [
    "Distribution",
    "ImageConfig",
    "ImagePullError",
    "ImageRecord",
    "ImageStore",
    "InUse",
    "LocalImage",
    "Reference",
    "RegistryAuth",
    "decode_registry_auth",
    "distribution",
    "parse_reference",
]

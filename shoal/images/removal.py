"""What `docker image rm` does to one image: which tags go, whether the image goes, or
the conflict docker reports. Pure."""

from __future__ import annotations

from dataclasses import dataclass

from shoal.errors import Conflict, ShoalError
from shoal.images.models import ImageRecord
from shoal.images.reference import parse_reference

__all__ = ["Removal", "plan_removal"]


@dataclass(frozen=True)
class Removal:
    untag: list[str]
    delete: bool


def _named_tag(record: ImageRecord, text: str) -> str | None:
    try:
        ref = parse_reference(text)
    except ShoalError:
        return None
    return ref.familiar_tagged if ref.familiar_tagged in record.repo_tags else None


def plan_removal(record: ImageRecord, text: str, force: bool, user: str | None) -> Removal:
    """`text` named `record` by a tag, a digest or its ID; `user` is a container using it."""
    short = record.id.removeprefix("sha256:")[:12]
    tag = _named_tag(record, text)
    if tag is not None and len(record.repo_tags) > 1:
        return Removal([tag], False)  # another tag keeps the image
    if user is not None:
        if tag is not None and not force:
            raise Conflict(
                f'conflict: unable to remove repository reference "{text}" (must force) - '
                f"container {user[:12]} is using its referenced image {short}"
            )
        raise Conflict(
            f"conflict: unable to delete {short} (cannot be forced) - image is being used "
            f"by running container {user[:12]}"
        )
    if tag is None and len(record.repo_tags) > 1 and not force:
        raise Conflict(
            f"conflict: unable to delete {short} (must be forced) - image is referenced in "
            "multiple repositories"
        )
    return Removal(list(record.repo_tags), True)

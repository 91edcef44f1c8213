"""Storage backends, chosen by URI: ``oss://`` or a local path."""
import functools

from visionfleet.pipeline.storage.base import IMAGE_SUFFIXES, Storage
from visionfleet.pipeline.storage.local import LocalStorage

__all__ = ["IMAGE_SUFFIXES", "Storage", "storage_for", "is_oss"]


def is_oss(uri: str) -> bool:
    return uri.startswith("oss://")


@functools.cache
def _oss() -> Storage:
    from visionfleet.pipeline.storage.oss import OssSettings, OssStorage

    return OssStorage(OssSettings.from_env())


@functools.cache
def _local() -> Storage:
    return LocalStorage()


def storage_for(uri: str) -> Storage:
    """The backend for a URI, built once per process (settings read then)."""
    return _oss() if is_oss(uri) else _local()

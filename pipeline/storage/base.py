"""The storage contract shared by local folders and OSS.

URIs are plain strings: ``oss://bucket/key`` or a filesystem path. Reads of
inputs fail with ``InputError`` for permanent problems (missing, forbidden,
too large) so the caller can write an error record; transient failures are
retried inside the backend and surface as ``RetryableError`` only when the
bounded retries are spent.
"""
from abc import ABC, abstractmethod
from collections.abc import Iterator

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff")


class Storage(ABC):
    @abstractmethod
    def read(self, uri: str, *, max_bytes: int | None = None) -> bytes:
        """The object's bytes; ``InputError`` if missing, forbidden or over ``max_bytes``."""

    @abstractmethod
    def write(self, uri: str, data: bytes) -> None:
        """Store ``data`` atomically: readers see all of it or nothing."""

    @abstractmethod
    def list(self, prefix: str) -> Iterator[str]:
        """Every object under ``prefix`` (recursively), streamed page by page, in a stable order."""

    def version(self, uri: str) -> str | None:
        """A cheap identifier of the object's current content, if the backend has one (OSS: ETag)."""
        return None

    @abstractmethod
    def iter_lines(self, uri: str, max_chars: int) -> Iterator[str]:
        """The lines of a text object, streamed (for manifests of any size).

        A line longer than ``max_chars`` comes in pieces of at most that many, so
        no line is ever held whole: the caller refuses a piece of full length."""

    @abstractmethod
    def exists(self, uri: str) -> bool:
        """Whether the object exists."""

    @abstractmethod
    def delete(self, uri: str) -> None:
        """Remove the object; no error if it is already gone."""

    @abstractmethod
    def join(self, base: str, *parts: str) -> str:
        """The URI of ``parts`` under ``base``."""


def too_large(uri: str, size: int, max_bytes: int) -> str:
    return (
        f"file too large: {size} bytes, over the limit of {max_bytes}; "
        f"raise VISIONFLEET_MAX_FILE_BYTES to allow it ({uri})"
    )

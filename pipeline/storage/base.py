"""The storage contract shared by local folders and OSS.

URIs are plain strings: ``oss://bucket/key`` or a filesystem path. Reads of
inputs fail with ``InputError`` for permanent problems (missing, forbidden,
too large) so the caller can write an error record; transient failures are
retried inside the backend and surface as ``RetryableError`` only when the
bounded retries are spent.
"""
import gzip
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import BinaryIO, ContextManager

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff")
# A listed object: its URI and a fingerprint of its content as the listing gave it (None: it gave none).
Entry = tuple[str, str | None]


class Storage(ABC):
    @abstractmethod
    def read(self, uri: str, *, max_bytes: int | None = None, nofollow: bool = False) -> bytes:
        """The object's bytes; ``InputError`` if missing, forbidden or over ``max_bytes``.

        ``nofollow``: ``uri`` is a local path already resolved and checked (``Access.check_uri``); it is
        read only if the kernel opens exactly that path, with no link at its end. OSS has no links."""

    @abstractmethod
    def write(self, uri: str, data: bytes) -> None:
        """Store ``data`` atomically: readers see all of it or nothing."""

    @abstractmethod
    def entries(self, prefix: str) -> Iterator[Entry]:
        """Every object under ``prefix`` (recursively), streamed page by page, in a stable order, with the
        fingerprint the listing itself gives (no request per object): OSS the ETag, a local file its size
        and modification time. Equal fingerprints mean unchanged content; an incremental run relies on it."""

    def list(self, prefix: str) -> Iterator[str]:
        """The URIs of ``entries``."""
        return (uri for uri, _ in self.entries(prefix))

    def version(self, uri: str) -> str | None:
        """A cheap identifier of the object's current content, if the backend has one (OSS: ETag)."""
        return None

    def answers(self, uri: str) -> bool:
        """Whether the place holding ``uri`` answers at all (its bucket, past retries): when one object
        keeps failing while this holds, the object is the problem, not the storage."""
        return True

    @abstractmethod
    def open_stream(self, uri: str) -> ContextManager[BinaryIO]:
        """The object's bytes as a stream (``read(n)``), for manifests and inventories of any size."""

    def iter_lines(self, uri: str, max_chars: int) -> Iterator[str]:
        """The lines of a text object (gzip'd when its name ends ``.gz``), streamed.

        A line longer than ``max_chars`` bytes comes in pieces of at most that many, so
        no line is ever held whole: the caller refuses a piece of full length."""
        with self.open_stream(uri) as raw:
            yield from read_lines(gzip.GzipFile(fileobj=raw) if uri.endswith(".gz") else raw, max_chars)

    @abstractmethod
    def exists(self, uri: str) -> bool:
        """Whether the object exists."""

    @abstractmethod
    def delete(self, uri: str) -> None:
        """Remove the object; no error if it is already gone."""


def too_large(uri: str, size: int, max_bytes: int) -> str:
    return (
        f"file too large: {size} bytes, over the limit of {max_bytes}; "
        f"raise VISIONFLEET_MAX_FILE_BYTES to allow it ({uri})"
    )


def read_lines(reader, max_chars: int, chunk_bytes: int = 1 << 16) -> Iterator[str]:
    """UTF-8 lines from a byte stream, each decoded alone (a bad byte is reported at its line);
    a line over ``max_chars`` bytes comes in pieces of that many."""
    rest = b""
    while chunk := reader.read(chunk_bytes):
        *lines, rest = (rest + chunk).split(b"\n")
        for line in lines:
            yield line.decode("utf-8")
        while len(rest) >= max_chars:  # a line with no end in sight
            piece, rest = rest[:max_chars], rest[max_chars:]
            yield piece.decode("utf-8", "replace")
    if rest:
        yield rest.decode("utf-8")

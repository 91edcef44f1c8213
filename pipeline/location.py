"""Where a file lives: a local path or an object in an OSS bucket, told apart once.

A caller that holds a ``Location`` joins names under it, makes it absolute and
reaches its storage without asking "is this OSS?" each time. Its string is
exactly the URI the storage backends take (``oss://bucket/key`` or a path),
so outputs written through it keep the names they always had.
"""
from dataclasses import dataclass
from pathlib import Path

from visionfleet.pipeline.storage import Storage, is_oss, storage_for
from visionfleet.pipeline.storage.local import absolute


@dataclass(frozen=True)
class Location:
    uri: str
    oss: bool  # an object in a bucket, else a local path

    @classmethod
    def parse(cls, uri: "str | Location") -> "Location":
        return uri if isinstance(uri, Location) else cls(uri, is_oss(uri))

    def __str__(self) -> str:
        return self.uri

    def child(self, *parts: str) -> "Location":
        """``parts`` under this place: keys joined by ``/``, paths as ``pathlib`` joins them."""
        if self.oss:
            return Location("/".join([self.uri.rstrip("/"), *parts]), True)
        return Location(str(Path(self.uri, *parts)), False)

    def absolute(self) -> "Location":
        """The same place from anywhere: a relative path means the folder it was typed in, which workers
        (and a later command) do not share. An OSS URI already is."""
        return self if self.oss else Location(absolute(self.uri), False)

    @property
    def storage(self) -> Storage:
        return storage_for(self.uri)

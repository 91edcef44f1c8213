"""OSS bucket inventories as a source: how teams list 50M keys without 50,000 list calls.

OSS writes, per inventory run, a ``manifest.json`` naming gzip'd CSV files
(``files``: ``key`` in the destination bucket, ``MD5checksum``) whose columns
``fileSchema`` names (``Bucket, Key, Size, ...``); keys are URL-encoded. Each
file is streamed and checked against its MD5 as it is read: a damaged or
half-written inventory fails planning by name, never plans a wrong job.

Each key comes with its content fingerprint (an incremental run compares
it): the ``ETag`` column where ``fileSchema`` has one, else ``Size`` and
``LastModifiedDate`` together, else none.
"""
import csv
import gzip
import hashlib
import json
from collections.abc import Iterator
from urllib.parse import unquote

from visionfleet.pipeline.errors import ConfigError, InputError
from visionfleet.pipeline.storage import storage_for
from visionfleet.pipeline.storage.base import Entry, read_lines

INVENTORY_MANIFEST = "manifest.json"
MAX_ROW_BYTES = 64 * 1024


def is_inventory(source: str) -> bool:
    return source.startswith("oss://") and source.rsplit("/", 1)[-1] == INVENTORY_MANIFEST


def iter_inventory(uri: str) -> Iterator[Entry]:
    """``oss://bucket/key`` of every object the inventory lists, with its fingerprint, file by file, streamed."""
    manifest = _manifest(uri)
    home = uri[len("oss://"):].split("/", 1)[0]
    columns = [c.strip().lower() for c in str(manifest.get("fileSchema", "")).split(",")]
    if "bucket" not in columns or "key" not in columns:
        raise ConfigError(f"inventory {uri}: fileSchema {manifest.get('fileSchema')!r} has no Bucket and Key columns")
    at = (columns.index("bucket"), columns.index("key"), *_fingerprint_columns(columns))
    where = manifest.get("destinationBucket") or home
    for entry in manifest.get("files") or []:
        yield from _file(f"oss://{where}/{entry['key']}", str(entry.get("MD5checksum", "")).lower(), at)


def _fingerprint_columns(columns: list[str]) -> tuple[int, ...]:
    """Where a row's fingerprint is: the ETag, as the listing gives it; else size and time; else nowhere."""
    if "etag" in columns:
        return (columns.index("etag"),)
    if "size" in columns and "lastmodifieddate" in columns:
        return columns.index("size"), columns.index("lastmodifieddate")
    return ()


def _manifest(uri: str) -> dict:
    try:
        manifest = json.loads(storage_for(uri).read(uri, max_bytes=64 * 1024 * 1024))
    except InputError as exc:
        raise ConfigError(f"cannot read inventory {uri}: {exc}") from None
    except ValueError:
        raise ConfigError(f"inventory {uri} is not JSON; give the manifest.json an OSS inventory run wrote") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files", []), list):
        raise ConfigError(f"inventory {uri} has no list of files; give the manifest.json of an OSS inventory run")
    return manifest


class _Digesting:
    """A byte stream that hashes what is read through it."""

    def __init__(self, raw) -> None:
        self.raw, self.md5 = raw, hashlib.md5(usedforsecurity=False)

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.md5.update(data)
        return data


def _file(uri: str, expected_md5: str, at: tuple[int, ...]) -> Iterator[Entry]:
    """``at``: the columns of bucket, key and the fingerprint's parts."""
    with storage_for(uri).open_stream(uri) as raw:
        stream = _Digesting(raw)
        rows = csv.reader(read_lines(gzip.GzipFile(fileobj=stream), MAX_ROW_BYTES))
        for number, row in enumerate(rows, 1):
            if len(row) <= max(at):
                raise ConfigError(f"inventory file {uri}, row {number}: {len(row)} columns, fewer than its schema")
            # An ETag as OSS lists it, without its quotes: the same object listed either way compares equal.
            fingerprint = "-".join(row[i].strip('"') for i in at[2:]) or None
            yield f"oss://{row[at[0]]}/{unquote(row[at[1]])}", fingerprint
        while stream.read(1 << 16):  # the rest (gzip trailer): the digest covers every byte
            pass
    if expected_md5 and stream.md5.hexdigest() != expected_md5:
        raise ConfigError(f"inventory file {uri}: MD5 {stream.md5.hexdigest()} does not match the manifest's "
                          f"{expected_md5}; the inventory is damaged or still being written: use a finished run")

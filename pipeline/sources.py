"""What a job reads: an OSS prefix, a local folder, or a manifest file.

Every source is a stream of URIs, each with the fingerprint of its content
where the source gives one (``iter_entries``): an OSS listing its ETag, a
local folder size and modification time, an inventory its columns, a
manifest a second column (``FINGERPRINTED``). Nothing here holds a whole
listing, so a 50-million-image source costs the memory of one listing page.
"""
import fnmatch
import os
from collections.abc import Iterator

from visionfleet.pipeline.access import MAX_URI_BYTES
from visionfleet.pipeline.errors import ConfigError
from visionfleet.pipeline.inventory import is_inventory, iter_inventory
from visionfleet.pipeline.storage import IMAGE_SUFFIXES, is_oss, storage_for
from visionfleet.pipeline.storage.base import Entry
from visionfleet.pipeline.storage.local import absolute

# Blank and comment lines allowed in a row (their bytes, newlines counted): a manifest's lines each
# hold at most MAX_URI_BYTES, and so, between two URIs, does this much of nothing.
MAX_SKIPPED_BYTES = 1 << 16
MANIFEST_SUFFIXES = tuple(s + gz for s in (".txt", ".lst", ".manifest", ".csv") for gz in ("", ".gz"))
# A manifest whose first line is exactly this holds ``URI<TAB>FINGERPRINT`` lines (split at the last tab; an
# empty fingerprint is none). Any other manifest is one URI a line, read as it always was: a name may hold
# spaces, commas and tabs, and no existing manifest starts with this comment.
FINGERPRINTED = "#uri\tfingerprint"


def is_manifest(source: str) -> bool:
    if is_oss(source):
        return source.lower().endswith(MANIFEST_SUFFIXES)
    return os.path.isfile(source) and not source.lower().endswith(IMAGE_SUFFIXES)


def iter_source(source: str, *, all_files: bool = False, include: tuple[str, ...] = (),
                exclude: tuple[str, ...] = ()) -> Iterator[str]:
    """The URIs of ``iter_entries``."""
    return (uri for uri, _ in iter_entries(source, all_files=all_files, include=include, exclude=exclude))


def iter_entries(source: str, *, all_files: bool = False, include: tuple[str, ...] = (),
                 exclude: tuple[str, ...] = ()) -> Iterator[Entry]:
    """The URIs a source names, whatever its kind, each with its fingerprint (None where the source gives
    none): those with an image suffix (unless ``all_files``) whose key (an OSS key, or a path) matches an
    ``include`` glob (if any) and no ``exclude`` glob."""
    for uri, fingerprint in _entries(source):
        key = uri.split("/", 3)[3] if is_oss(uri) else uri
        if not all_files and not uri.lower().endswith(IMAGE_SUFFIXES):
            continue
        if include and not any(fnmatch.fnmatchcase(key, p) for p in include):
            continue
        if any(fnmatch.fnmatchcase(key, p) for p in exclude):
            continue
        yield uri, fingerprint


def _entries(source: str) -> Iterator[Entry]:
    if is_inventory(source):
        return iter_inventory(source)
    if is_manifest(source):
        return _manifest(source)
    if not is_oss(source) and not os.path.exists(source):
        raise ConfigError(f"source {source} does not exist; give a folder, a manifest file or oss://bucket/prefix/")
    return storage_for(source).entries(source)


def _manifest(source: str) -> Iterator[Entry]:
    base = os.path.dirname(absolute(source)) if not is_oss(source) else None
    skipped = 0  # bytes of blank and comment lines since the last URI
    fingerprinted = False
    for number, line in _numbered_lines(source):
        if number == 1 and line.rstrip("\r\n") == FINGERPRINTED:
            fingerprinted = True
            continue
        size = len(line.rstrip("\r\n").encode("utf-8", "surrogatepass"))
        if size > MAX_URI_BYTES:
            raise ConfigError(f"manifest {source}, line {number}: longer than {MAX_URI_BYTES} bytes; a manifest "
                              "holds one URI per line")
        uri = line.strip()
        if not uri or uri.startswith("#"):
            skipped += size + 1
            if skipped > MAX_SKIPPED_BYTES:  # e.g. a 300 KB .gz of 300 MB of newlines: minutes of CPU for nothing
                raise ConfigError(f"manifest {source}, line {number}: over {MAX_SKIPPED_BYTES} bytes of blank or "
                                  "comment lines in a row; a manifest holds one URI per line")
            continue
        skipped = 0
        fingerprint = None
        if fingerprinted and "\t" in uri:
            uri, fingerprint = (part.strip() for part in uri.rsplit("\t", 1))
        if base is not None and not is_oss(uri) and not os.path.isabs(uri):
            uri = os.path.join(base, uri)  # relative to the manifest, as a user means it
        yield uri, fingerprint or None


def _numbered_lines(source: str) -> Iterator[tuple[int, str]]:
    number = 0
    try:
        for number, line in enumerate(storage_for(source).iter_lines(source, max_chars=MAX_URI_BYTES + 1), 1):
            yield number, line
    except UnicodeDecodeError:
        raise ConfigError(f"manifest {source}, line {number + 1}: not UTF-8 text; a manifest is a text file "
                          "with one URI per line (to label an image, give its folder)") from None

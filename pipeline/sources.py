"""What a job reads: an OSS prefix, a local folder, or a manifest file.

Every source is a stream of URIs; nothing here holds a whole listing, so a
50-million-image source costs the memory of one listing page.
"""
import os
from collections.abc import Iterator

from visionfleet.pipeline.access import MAX_URI_BYTES
from visionfleet.pipeline.errors import ConfigError
from visionfleet.pipeline.storage import IMAGE_SUFFIXES, is_oss, storage_for

MANIFEST_SUFFIXES = (".txt", ".lst", ".manifest", ".csv")


def is_manifest(source: str) -> bool:
    if is_oss(source):
        return source.lower().endswith(MANIFEST_SUFFIXES)
    return os.path.isfile(source) and not source.lower().endswith(IMAGE_SUFFIXES)


def iter_source(source: str, *, all_files: bool = False) -> Iterator[str]:
    """The URIs a source names. Listings keep image files only unless ``all_files``."""
    if is_manifest(source):
        yield from _manifest(source)
        return
    if not is_oss(source) and not os.path.exists(source):
        raise ConfigError(f"source {source} does not exist; give a folder, a manifest file or oss://bucket/prefix/")
    for uri in storage_for(source).list(source):
        if all_files or uri.lower().endswith(IMAGE_SUFFIXES):
            yield uri


def _manifest(source: str) -> Iterator[str]:
    base = os.path.dirname(os.path.abspath(source)) if not is_oss(source) else None
    for number, line in _numbered_lines(source):
        if len(line.rstrip("\r\n").encode("utf-8", "surrogatepass")) > MAX_URI_BYTES:
            raise ConfigError(f"manifest {source}, line {number}: longer than {MAX_URI_BYTES} bytes; a manifest "
                              "holds one URI per line")
        uri = line.strip()
        if not uri or uri.startswith("#"):
            continue
        if base is not None and not is_oss(uri) and not os.path.isabs(uri):
            uri = os.path.join(base, uri)  # relative to the manifest, as a user means it
        yield uri


def _numbered_lines(source: str) -> Iterator[tuple[int, str]]:
    number = 0
    try:
        for number, line in enumerate(storage_for(source).iter_lines(source, max_chars=MAX_URI_BYTES + 1), 1):
            yield number, line
    except UnicodeDecodeError:
        raise ConfigError(f"manifest {source}, line {number + 1}: not UTF-8 text; a manifest is a text file "
                          "with one URI per line (to label an image, give its folder)") from None

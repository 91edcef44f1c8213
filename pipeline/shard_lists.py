"""A shard's URI list under ``DEST/<job_id>/_plan/``: written by the planner, read by workers.

Each input is one JSON array on its own line, ``[URI, FINGERPRINT]``
(``shard-SSSSSS.jsonl``): the URI as listed, and the fingerprint of its
content the listing gave (``sources.iter_entries``; null where it gave
none), which the worker puts into the input's record. JSON escapes every
control character, line and paragraph separator and lone surrogate (a file
name that is not UTF-8, as ``os.fsdecode`` gives it), so any name a file
system or OSS allows comes back exactly as listed, and no name can add a
line, which would inject another URI into the shard.

Jobs planned before fingerprints kept one JSON string a line (their job's
``shard_lists`` is ``jsonl``); before that, one bare URI a line
(``shard-SSSSSS.txt``, no ``shard_lists``). Both are still read, as they
were written, their fingerprints null.
"""
import json
from collections.abc import Iterator
from itertools import count

from visionfleet.pipeline import layout
from visionfleet.pipeline.job import Job
from visionfleet.pipeline.storage import storage_for
from visionfleet.pipeline.storage.base import Entry

FORMAT = "entries"  # a job's ``shard_lists``
STRINGS = "jsonl"  # the format before it: one JSON string a line


def encode(entries: list[Entry]) -> bytes:
    # ensure_ascii: the file is plain ASCII, and a lone surrogate is written as its escape.
    return "".join(json.dumps([uri, fingerprint]) + "\n" for uri, fingerprint in entries).encode("ascii")


def decode(data: bytes) -> list[Entry]:
    entries = [json.loads(line) for line in data.split(b"\n") if line]
    if not all(_is_entry(entry) for entry in entries):
        raise ValueError("a shard list holds one [URI, fingerprint] JSON array per line")
    return [(uri, fingerprint) for uri, fingerprint in entries]


def _is_entry(entry) -> bool:
    return (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str)
            and isinstance(entry[1], (str, type(None))))


def _decode_strings(data: bytes) -> list[str]:
    uris = [json.loads(line) for line in data.split(b"\n") if line]
    if not all(isinstance(uri, str) for uri in uris):
        raise ValueError("a shard list of this job holds one JSON string per line")
    return uris


def _decode_legacy(data: bytes) -> list[str]:
    # Split on "\n" alone, as the lists were joined: splitlines() also cut names at \x0c or \u2028.
    return data.decode("utf-8").split("\n")[:-1]


def path(job: Job, index: int) -> str:
    """Where shard ``index`` of ``job`` keeps its URIs."""
    return layout.shard_list(job.root, index, legacy=job.shard_lists is None)


def write(root: str, index: int, entries: list[Entry]) -> None:
    storage_for(root).write(layout.shard_list(root, index), encode(entries))


def read_entries(job: Job, index: int) -> list[Entry]:
    """The inputs of shard ``index`` with their fingerprints, exactly as they were planned."""
    data = storage_for(job.root).read(path(job, index))
    if job.shard_lists == FORMAT:
        return decode(data)
    uris = _decode_strings(data) if job.shard_lists == STRINGS else _decode_legacy(data)
    return [(uri, None) for uri in uris]


def read(job: Job, index: int) -> list[str]:
    """The URIs of shard ``index``, exactly as they were planned."""
    return [uri for uri, _ in read_entries(job, index)]


def iter_planned(job: Job) -> Iterator[str]:
    """The job's URIs in plan order, from the shard lists written so far."""
    storage = storage_for(job.root)
    for index in count():
        if not storage.exists(path(job, index)):
            return
        yield from read(job, index)

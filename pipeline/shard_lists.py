"""A shard's URI list under ``DEST/<job_id>/_plan/``: written by the planner, read by workers.

Each URI is one JSON string on its own line (``shard-SSSSSS.jsonl``). JSON
escapes every control character, line and paragraph separator and lone
surrogate (a file name that is not UTF-8, as ``os.fsdecode`` gives it), so
any name a file system or OSS allows comes back exactly as listed, and no
name can add a line, which would inject another URI into the shard.

Jobs planned before this format kept one bare URI a line
(``shard-SSSSSS.txt``); their job has no ``shard_lists`` format and they
are still read, as they were written.
"""
import json
from collections.abc import Iterator
from itertools import count

from visionfleet.pipeline import layout
from visionfleet.pipeline.job import Job
from visionfleet.pipeline.storage import storage_for

FORMAT = "jsonl"  # a job's ``shard_lists``


def encode(uris: list[str]) -> bytes:
    # ensure_ascii: the file is plain ASCII, and a lone surrogate is written as its escape.
    return "".join(json.dumps(uri) + "\n" for uri in uris).encode("ascii")


def decode(data: bytes) -> list[str]:
    uris = [json.loads(line) for line in data.split(b"\n") if line]
    if not all(isinstance(uri, str) for uri in uris):
        raise ValueError("a shard list holds one JSON string per line")
    return uris


def _decode_legacy(data: bytes) -> list[str]:
    # Split on "\n" alone, as the lists were joined: splitlines() also cut names at \x0c or \u2028.
    return data.decode("utf-8").split("\n")[:-1]


def path(job: Job, index: int) -> str:
    """Where shard ``index`` of ``job`` keeps its URIs."""
    return layout.shard_list(job.root, index, legacy=job.shard_lists != FORMAT)


def write(root: str, index: int, uris: list[str]) -> None:
    storage_for(root).write(layout.shard_list(root, index), encode(uris))


def read(job: Job, index: int) -> list[str]:
    """The URIs of shard ``index``, exactly as they were planned."""
    data = storage_for(job.root).read(path(job, index))
    return decode(data) if job.shard_lists == FORMAT else _decode_legacy(data)


def iter_planned(job: Job) -> Iterator[str]:
    """The job's URIs in plan order, from the shard lists written so far."""
    storage = storage_for(job.root)
    for index in count():
        if not storage.exists(path(job, index)):
            return
        yield from read(job, index)

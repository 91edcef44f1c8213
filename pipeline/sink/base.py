"""The one owner of what a job writes under ``DEST/<job_id>/``: its parts, the
durable copies of its shards' checkpoints, and the summary that ends it.

Shaped after Ray Data's ``Datasink``: ``write_part`` is its ``write`` (once
per commit, from any worker), ``finalise`` its ``on_write_complete`` (once,
when every shard has ended); nothing needs preparing before the first part,
so there is no ``on_write_start``. A format is a subclass that gives the
parts' extension and bytes, and reads them back. Where files go
(``pipeline.layout``), what is atomic, and the files that are JSON whatever the format (checkpoint copies,
``_SUMMARY.json``, ``_SUCCESS.json``) are the same for every format, so they live here.
"""
import json
from abc import ABC, abstractmethod
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

from visionfleet.pipeline import layout
from visionfleet.pipeline.location import Location


class OutputSink(ABC):
    extension: str  # the parts' file extension, with its dot
    # Whether a shard's last commit writes its whole range as one part (``write_whole``), replacing the
    # shard's earlier parts: a table reader pays per file, so a format read as a table leaves one per shard.
    compacts = False

    def __init__(self, root: str | Location, embedding_dim: int | None = None) -> None:
        self.root = Location.parse(root)
        # In a job that asked for embeddings, their length: a format with typed columns gives a part of
        # error records alone the embedding column too, so every part has the same columns.
        self.embedding_dim = embedding_dim

    @abstractmethod
    def encode(self, records: list[dict]) -> bytes:
        """One part's bytes: ``records`` in input order."""

    @abstractmethod
    def read_part(self, name: str) -> Iterator[dict]:
        """The records of part ``name`` under this job, in order, streamed: a reader holds at most one part's
        bytes (a shard's records), never the job's."""

    def part_name(self, shard: int, start: int, end: int, token: str) -> str:
        return layout.part_stem(shard, start, end, token) + self.extension

    def write_part(self, shard: int, start: int, end: int, token: str, records: list[dict]) -> str:
        """The records of URIs ``[start, end)`` of ``shard``, written by the holder of lease ``token``, as
        one part: whole or not at all, so a reader never meets half of one. Its name, for the commit."""
        name = self.part_name(shard, start, end, token)
        self.root.storage.write(layout.child(self.root, name), self.encode(records))
        return name

    def write_whole(self, shard: int, end: int, token: str, earlier: list[str], records: list[dict]) -> str:
        """One part of URIs ``[0, end)`` of ``shard``: its committed parts ``earlier`` (in order) and then
        ``records``, written as ``write_part`` writes. Its name, for the commit that replaces ``earlier``."""
        kept = [record for name in earlier for record in self.read_part(name)]
        return self.write_part(shard, 0, end, token, kept + records)

    def delete_part(self, name: str) -> None:
        """Remove a part whose commit was refused, or that a whole part replaced: an orphan no summary lists.
        Gone already is fine."""
        self.root.storage.delete(layout.child(self.root, name))

    def write_checkpoint(self, shard: int, checkpoint: dict) -> None:
        """The durable copy of ``shard``'s checkpoint, so its progress outlives the state store."""
        self.root.storage.write(layout.checkpoint_file(self.root, shard), json.dumps(checkpoint).encode())

    def checkpoints(self) -> list[tuple[int, dict]]:
        """Every durable checkpoint copy as ``(shard, checkpoint)``: what a lost job is rebuilt from."""
        storage = self.root.storage
        files = list(storage.list(layout.child(self.root, layout.CHECKPOINT_DIR)))
        with ThreadPoolExecutor(16) as pool:  # 50k small reads: overlap their latency
            return list(pool.map(lambda uri: (layout.checkpoint_shard(uri), json.loads(storage.read(uri))), files))

    def finalise(self, summary: dict) -> None:
        """The job's summary, which lists the parts that are output: ``_SUMMARY.json`` for every job that
        ended, then the same as ``_SUCCESS.json`` if its ``state`` is ``succeeded``, whose presence says
        the output is finished and good (a pipeline waiting for it never takes a failed job)."""
        data = json.dumps(summary, indent=1).encode()
        self.root.storage.write(layout.child(self.root, layout.SUMMARY), data)
        if summary["state"] == "succeeded":
            self.root.storage.write(layout.child(self.root, layout.SUCCESS), data)

"""Parquet parts (pyarrow, zstd): one row per record, in input order, in fixed and documented columns, so a
data team reads a finished job as a table (DuckDB, pandas, Spark) without loading text first.

A part is one commit's records, and a shard's last commit rewrites its parts as one (``write_whole``): a
finished job has one part per shard, each one row group. ``embedding`` is a column only in a job that asked for
embeddings: a fixed-size list of float16 whose size is the model's (null on error records)."""
import io
import os
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from visionfleet.pipeline import layout
from visionfleet.pipeline.sink.base import OutputSink

LABEL = pa.struct([("label", pa.string()), ("class_id", pa.int32()), ("score", pa.float32())])
COLUMNS = pa.schema([
    ("uri", pa.string()), ("status", pa.string()), ("error", pa.string()), ("labels", pa.list_(LABEL)),
    ("model", pa.string()), ("model_version", pa.string()), ("preprocess", pa.string()),
    ("fingerprint", pa.string()),
])


class ParquetSink(OutputSink):
    extension = ".parquet"
    compacts = True

    def encode(self, records: list[dict]) -> bytes:
        return _parquet(to_table(records, self.embedding_dim))

    def write_whole(self, shard: int, end: int, token: str, earlier: list[str], records: list[dict]) -> str:
        """As Arrow tables, never Python records: a shard's embeddings are a few tens of MB as float16."""
        tables = [self._table(name) for name in earlier] + [to_table(records, self.embedding_dim)]
        # A part whose records are all errors has no embedding column: nulls there, as in every other row.
        whole = pa.concat_tables(tables, promote_options="default")
        name = self.part_name(shard, 0, end, token)
        self.root.storage.write(layout.child(self.root, name), _parquet(whole))
        return name

    def _table(self, name: str) -> pa.Table:
        return pq.read_table(self._source(name))

    def _source(self, name: str):
        """A local part is read in place; an OSS part (a shard's records at most) fetched whole."""
        uri = layout.child(self.root, name)
        return pa.BufferReader(self.root.storage.read(uri)) if self.root.oss else uri

    def read_part(self, name: str) -> Iterator[dict]:
        """Row group by row group. Records read as JSON Lines ones do, a column a record lacks as null and
        scores rounded as written (float32 holds them to 7 digits)."""
        parts = pq.ParquetFile(self._source(name))
        for group in range(parts.num_row_groups):
            for record in parts.read_row_group(group).to_pylist():
                for label in record["labels"] or ():
                    label["score"] = round(label["score"], 4)
                yield record


def schema(embedding_dim: int | None) -> pa.Schema:
    """The parts' columns; ``embedding`` only when the records carry embeddings of ``embedding_dim`` values."""
    if embedding_dim is None:
        return COLUMNS
    return COLUMNS.append(pa.field("embedding", pa.list_(pa.float16(), embedding_dim)))


def to_table(records: list[dict], embedding_dim: int | None = None) -> pa.Table:
    """``embedding_dim``: the job's, which its parts have as a column even when none of their records has one."""
    columns = {name: [_text(r.get(name)) for r in records] for name in COLUMNS.names if name != "labels"}
    columns["labels"] = [r.get("labels") for r in records]
    dim = _embedding_dim(records, embedding_dim)
    if dim is not None:
        columns["embedding"] = [r.get("embedding") for r in records]
    return pa.Table.from_pydict(columns, schema=schema(dim))


def _embedding_dim(records: list[dict], expected: int | None) -> int | None:
    dims = {len(r["embedding"]) for r in records if r.get("embedding") is not None} | ({expected} - {None})
    if len(dims) > 1:
        raise ValueError(f"embeddings of {sorted(dims)} values in one part: every record of a job has the same "
                         "model, so one of them is wrong")
    return dims.pop() if dims else None


def _text(value: str | None) -> str | None:
    """Parquet strings are UTF-8: a file name that is not (lone surrogates, ``os.fsdecode``) keeps its
    bytes as ``\\xNN`` escapes, as ``ls -b`` shows it."""
    if value is None:
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(value).decode("utf-8", "backslashreplace")
    return value


def _parquet(table: pa.Table) -> bytes:
    """One row group: a part is at most a shard's records."""
    out = io.BytesIO()
    pq.write_table(table, out, compression="zstd", row_group_size=max(table.num_rows, 1))
    return out.getvalue()

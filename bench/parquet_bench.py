"""Parquet against JSON Lines, side by side in one run: bytes per record and write rate (encode and write
through the job's own sink, one part per 1,000 records, as a worker commits), for records like a real job's:
top-5 ImageNet labels, with and without 1,280-value embeddings. Then what a table reader pays per file: a
50M-image job's rows as parts of 1,000 rows (one per shard at the default --shard-size), of 10,000, and as
a few large files, read by pyarrow.dataset (and DuckDB, if installed).
Run by hand:

    python -m bench.parquet_bench [--records 20000] [--rows 50000000] [--work /tmp/visionfleet-parquet-bench]

Measured on the 2-core python-svc machine: see the README, "Parquet output".
"""
import argparse
import json
import random
import shutil
import time
from pathlib import Path

import numpy as np
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from visionfleet.pipeline.labels import imagenet_class_names
from visionfleet.pipeline.sink import sink_for
from visionfleet.pipeline.sink.parquet import to_table

COMMIT = 1000  # records per part: a worker's commit at the default cadence
EMBEDDING_DIM = 1280  # the built-in model's pooled features


def records(count: int, embeddings: bool, seed: int = 0) -> list[dict]:
    """Ok records as the labeller writes them: top-5 labels of 1,000 classes, scores rounded to 4 places,
    one error record in 100."""
    rng, names = random.Random(seed), imagenet_class_names()
    vectors = np.random.default_rng(seed).normal(size=(count, EMBEDDING_DIM)).astype(np.float32) if embeddings else None
    out = []
    for i in range(count):
        uri = f"oss://photos-archive/uploads/2019/{i % 12 + 1:02d}/{rng.getrandbits(64):016x}.jpg"
        if i % 100 == 99:
            out.append({"uri": uri, "status": "error", "error": f"not an image: cannot identify image file ({uri})",
                        "labels": None, "model": "efficientnet_lite0", "model_version": None})
            continue
        scores = sorted((rng.random() for _ in range(5)), reverse=True)
        labels = [{"label": names[c], "class_id": c, "score": round(s / 2, 4)}
                  for c, s in zip(rng.sample(range(1000), 5), scores)]
        record = {"uri": uri, "status": "ok", "labels": labels, "model": "efficientnet_lite0", "model_version": None,
                  "preprocess": "1"}
        if embeddings:
            record["embedding"] = vectors[i].tolist()
        out.append(record)
    return out


def write(work: Path, output_format: str, batch: list[dict]) -> dict:
    """Encode and write ``batch`` in commit-sized parts: bytes per record, records per second."""
    root = work / output_format
    shutil.rmtree(root, ignore_errors=True)
    sink = sink_for(str(root), output_format)
    start = time.perf_counter()
    for offset in range(0, len(batch), COMMIT):
        sink.write_part(0, offset, offset + COMMIT, "1", batch[offset:offset + COMMIT])
    seconds = time.perf_counter() - start
    size = sum(p.stat().st_size for p in root.iterdir())
    return {"bytes_per_record": round(size / len(batch), 1), "records_per_s": round(len(batch) / seconds)}


def reading(work: Path, rows: int, layouts: tuple[int, ...] = (1000, 10_000, 1_000_000)) -> dict:
    """Seconds to read the same ``rows`` as files of each layout's rows (a finished job has one part per
    shard: 1,000 rows at the default --shard-size), by pyarrow.dataset (the labels column) and DuckDB (a
    group-by on the top-1 label), each from a cold start. Rows are drawn from a pool of 200k records, in a
    new order in every file."""
    pool, rng = to_table(records(200_000, False, seed=1)), np.random.default_rng(1)
    result = {"rows": rows}
    for per_file in layouts:
        folder = work / f"rows-{per_file}"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        files = max(rows // per_file, 1)
        for k in range(files):
            pq.write_table(pool.take(rng.integers(0, len(pool), per_file)), folder / f"part-{k:06d}.parquet",
                           compression="zstd", row_group_size=per_file)
        result[f"{per_file}_rows_per_file"] = {"files": files, **_read(folder)}
        shutil.rmtree(folder)
    return result


def _read(folder: Path) -> dict:
    start = time.perf_counter()
    rows = ds.dataset(folder, format="parquet").to_table(columns=["labels"]).num_rows
    seen = {"pyarrow_s": round(time.perf_counter() - start, 2), "rows_read": rows}
    try:
        import duckdb  # measuring only: not a dependency
    except ImportError:
        return seen
    start = time.perf_counter()
    duckdb.connect().sql(f"select labels[1].label, count(*) from read_parquet('{folder}/*.parquet') group by 1").fetchall()
    return {**seen, "duckdb_group_by_s": round(time.perf_counter() - start, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--rows", type=int, default=50_000_000, help="rows in the reading measurement")
    parser.add_argument("--work", type=Path, default=Path("/tmp/visionfleet-parquet-bench"))
    args = parser.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    try:
        result = {}
        for embeddings in (False, True):
            batch = records(args.records, embeddings)
            result["top5+embedding" if embeddings else "top5"] = {
                output_format: write(args.work, output_format, batch) for output_format in ("jsonl", "parquet")}
        result["reading"] = reading(args.work, args.rows)
    finally:
        shutil.rmtree(args.work, ignore_errors=True)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()

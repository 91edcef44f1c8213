"""Time, peak memory and temp disk of an incremental run's join with its base (by hand, not in CI):

    python -m bench.incremental_join [--records 1000000] [--work /tmp/incremental-bench]

A base of ``--records`` ok records (OSS URIs of a typical length, 32-hex ETags), a listing of the
same plus 1% new and 1% with a new ETag: the planner's join alone (``reports.incremental``), as
``relabel --incremental-from`` runs it, to the last entry to label. Peak RSS is this process's;
temp disk is the join's folder at its fullest (both sides split, every partition joined).
"""
import argparse
import hashlib
import json
import resource
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from visionfleet.pipeline.preprocess import current  # noqa: E402
from visionfleet.reports import incremental  # noqa: E402
from visionfleet.reports.outputs import JobOutput  # noqa: E402


def uri(i: int) -> str:
    return f"oss://photos-prod/uploads/2024/{i % 12 + 1:02d}/{i % 28 + 1:02d}/user-{i * 7919 % 999983:06d}/{i:09d}.jpg"


def etag(i: int, version: int = 0) -> str:
    return hashlib.md5(f"{i}:{version}".encode()).hexdigest().upper()


def write_base(root: Path, count: int) -> JobOutput:
    root.mkdir(parents=True)
    parts = []
    for start in range(0, count, 100_000):
        name = f"part-{start:09d}.jsonl"
        with open(root / name, "w") as f:
            for i in range(start, min(start + 100_000, count)):
                f.write(json.dumps({"uri": uri(i), "status": "ok", "labels": [{"label": "cat", "class_id": 281,
                                    "score": 0.9}], "model": "m", "model_version": None, "preprocess": current(),
                                    "fingerprint": etag(i)}) + "\n")
        parts.append(name)
    return JobOutput(str(root), {"total": count, "parts": parts})


def listing(count: int):
    for i in range(count + count // 100):
        yield uri(i), etag(i, 1 if i % 100 == 0 else 0)  # 1% replaced, and 1% new at the end


def folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--work", default="/tmp/incremental-bench")
    args = parser.parse_args()
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    base = write_base(work / "base", args.records)
    scratch = work / "scratch"
    scratch.mkdir()
    start = time.perf_counter()
    with incremental.unchanged_skipped(listing(args.records), [base], embeddings=False, preprocess=current(),
                                       scratch=str(scratch)) as (kept, skipped):
        labelled = sum(1 for _ in kept)
        temp = folder_bytes(scratch)
    seconds = time.perf_counter() - start
    listed = args.records + args.records // 100
    print(json.dumps({"base_records": args.records, "listed": listed, "labelled": labelled, "skipped": skipped,
                      "seconds": round(seconds, 1), "entries_per_s": round(listed / seconds),
                      "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                      "temp_mb": round(temp / 2**20, 1), "temp_bytes_per_listed": round(temp / listed),
                      "base_part_mb": round(folder_bytes(work / "base") / 2**20, 1)}))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

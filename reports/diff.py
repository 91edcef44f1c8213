"""What a new run changed: two finished jobs' records joined by URI, in bounded memory.

Both sides are first hash-partitioned by URI into files (one pass each),
then each partition is joined alone: memory holds one partition of one
side (``PARTITION_RECORDS``), however many records the runs have. The
changed URIs of each partition are sorted there and the sorted files merged
into ``changed.jsonl``, so the whole list is never in memory either.

"Most confident disagreement" is the lower of the two top-1 scores: both
models sure, and different, is what a reviewer should see first.
"""
import heapq
import json
import math
import tempfile
import zlib
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from visionfleet.reports.outputs import JobOutput, top1

PARTITION_RECORDS = 200_000
TOP_CLASSES = 10  # rows and columns of the transition matrix, beside "other"
GAINED_LOST = 10
BANDS = 10  # confidence bands of the new top-1 score, each 1/BANDS wide
OTHER = "other"
# The column of an image whose label changed from one rarer class to another: in "other -> other" it would
# sit on the diagonal, and the diagonal is what did not change.
ANOTHER = "another other"


@dataclass
class Tally:
    both: int = 0
    only_old: int = 0
    only_new: int = 0
    errors_old: int = 0  # error records among the old run's
    errors_new: int = 0
    both_ok: int = 0
    changed: int = 0
    transitions: Counter = field(default_factory=Counter)  # (old label, new label) over URIs ok in both
    band_images: list = field(default_factory=lambda: [0] * BANDS)
    band_changed: list = field(default_factory=lambda: [0] * BANDS)

    def pair(self, old: list, new: list) -> dict | None:
        """Count one URI present in both runs; its changed.jsonl row if its top-1 changed."""
        self.both += 1
        if old[1] is None or new[1] is None:
            return None
        self.both_ok += 1
        self.transitions[old[1], new[1]] += 1
        band = min(int(new[2] * BANDS), BANDS - 1)
        self.band_images[band] += 1
        if old[1] == new[1]:
            return None
        self.changed += 1
        self.band_changed[band] += 1
        return {"uri": old[0], "old": {"label": old[1], "score": old[2]}, "new": {"label": new[1], "score": new[2]}}


def diff(old: JobOutput, new: JobOutput, report_dir: Path, *, sample: int | None = None,
         scratch: str | None = None) -> dict:
    """Write ``diff.json`` and ``changed.jsonl`` into ``report_dir``; the diff.json contents."""
    report_dir.mkdir(parents=True, exist_ok=True)
    biggest = max(old.summary.get("total", 0), new.summary.get("total", 0))
    partitions = max(1, math.ceil(biggest / PARTITION_RECORDS))
    tally = Tally()
    with tempfile.TemporaryDirectory(prefix="visionfleet-diff-", dir=scratch) as tmp:
        work = Path(tmp)
        tally.errors_old = _split(old.records(), work, "old", partitions)
        tally.errors_new = _split(new.records(), work, "new", partitions)
        for p in range(partitions):
            _join(work, p, tally)
        written = _merge((work / f"changed-{p}.jsonl" for p in range(partitions)), report_dir / "changed.jsonl",
                         sample)
    result = summarize(tally, old, new, written)
    (report_dir / "diff.json").write_text(json.dumps(result, indent=1))
    return result


def _row(record: dict) -> list:
    best = top1(record)
    return [record["uri"], *(best or (None, None))]


def _split(records: Iterable[dict], work: Path, side: str, partitions: int) -> int:
    """Each record's compact row into its URI's partition file; the count of error records."""
    errors = 0
    with ExitStack() as stack:
        files = [stack.enter_context(open(work / f"{side}-{p}.jsonl", "w", encoding="utf-8"))
                 for p in range(partitions)]
        for record in records:
            row = _row(record)
            errors += row[1] is None
            files[zlib.crc32(row[0].encode("utf-8")) % partitions].write(json.dumps(row) + "\n")
    return errors


def _rows(path: Path) -> Iterator[list]:
    with open(path, encoding="utf-8") as f:
        for line in f:
            yield json.loads(line)


def _join(work: Path, p: int, tally: Tally) -> None:
    olds: dict[str, deque] = {}
    for row in _rows(work / f"old-{p}.jsonl"):
        olds.setdefault(row[0], deque()).append(row)  # a URI listed twice pairs up in order
    changed = []
    for row in _rows(work / f"new-{p}.jsonl"):
        queue = olds.get(row[0])
        if not queue:
            tally.only_new += 1
            continue
        if (line := tally.pair(queue.popleft(), row)) is not None:
            changed.append(line)
    tally.only_old += sum(len(q) for q in olds.values())
    changed.sort(key=review_order)
    with open(work / f"changed-{p}.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps(line, ensure_ascii=False) + "\n" for line in changed)


def review_order(line: dict) -> tuple:
    """Most confident disagreement first: the lower top-1 score, then the new one, then the URI."""
    old, new = line["old"]["score"], line["new"]["score"]
    return -min(old, new), -new, line["uri"]


def _merge(paths: Iterable[Path], out: Path, sample: int | None) -> int:
    with ExitStack() as stack:
        streams = [(json.loads(line) for line in stack.enter_context(open(p, encoding="utf-8"))) for p in paths]
        written = 0
        with open(out, "w", encoding="utf-8") as f:
            for line in heapq.merge(*streams, key=review_order):
                if sample is not None and written >= sample:
                    break
                f.write(json.dumps(line, ensure_ascii=False) + "\n")
                written += 1
    return written


def summarize(tally: Tally, old: JobOutput, new: JobOutput, written: int) -> dict:
    old_counts, new_counts = Counter(), Counter()
    for (a, b), n in tally.transitions.items():
        old_counts[a] += n
        new_counts[b] += n
    return {
        "old": _side(old), "new": _side(new),
        "totals": {"both": tally.both, "only_old": tally.only_old, "only_new": tally.only_new,
                   "errors_old": tally.errors_old, "errors_new": tally.errors_new, "both_ok": tally.both_ok,
                   "changed_top1": tally.changed,
                   "changed_top1_rate": round(tally.changed / tally.both_ok, 6) if tally.both_ok else None},
        "transitions": _matrix(tally.transitions, old_counts + new_counts),
        **_gained_lost(old_counts, new_counts),
        "confidence_bands": [
            {"from": round(i / BANDS, 2), "to": round((i + 1) / BANDS, 2), "images": n,
             "changed": tally.band_changed[i], "changed_rate": round(tally.band_changed[i] / n, 6) if n else None}
            for i, n in enumerate(tally.band_images)],
        "changed_written": written,
    }


def _side(output: JobOutput) -> dict:
    s = output.summary
    return {"root": output.root, "job_id": s.get("job_id"), "state": s.get("state", "succeeded"),
            "total": s.get("total"), "ok": s.get("ok"), "errors": s.get("errors"), **output.engine}


def _matrix(transitions: Counter, frequency: Counter) -> dict:
    """Rows: the old label; columns: the new one; the most frequent classes and "other", and one more column,
    ``ANOTHER``, for a change between two rarer classes: off the diagonal is every change, nothing else."""
    classes = sorted(frequency, key=lambda label: (-frequency[label], label))[:TOP_CLASSES]  # ties: by name
    index = {label: i for i, label in enumerate(classes)}
    other = len(classes)
    matrix = [[0] * (other + 2) for _ in range(other + 1)]
    for (a, b), n in transitions.items():
        row, column = index.get(a, other), index.get(b, other)
        matrix[row][other + 1 if row == column == other and a != b else column] += n
    return {"classes": classes + [OTHER], "columns": classes + [OTHER, ANOTHER], "matrix": matrix}


def _gained_lost(old_counts: Counter, new_counts: Counter) -> dict:
    deltas = [{"label": label, "old": old_counts[label], "new": new_counts[label],
               "delta": new_counts[label] - old_counts[label]} for label in old_counts.keys() | new_counts.keys()]
    deltas.sort(key=lambda d: (-d["delta"], d["label"]))
    return {"gained": [d for d in deltas if d["delta"] > 0][:GAINED_LOST],
            "lost": [d for d in reversed(deltas) if d["delta"] < 0][:GAINED_LOST]}

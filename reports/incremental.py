"""Incremental runs: skip the inputs a finished job already labelled, with this model, unchanged since.

An input is skipped when the base's newest record of its URI is ``ok``,
made with the preprocess version this run's workers make (``preprocess.py``; with the
embedding when this job asks for embeddings), and has the fingerprint the
listing gives now. A listing that gives no fingerprint (a plain manifest)
compares the URI alone. The base must have succeeded and have run the same
model spec, model digest and top k; anything else is refused (exit 2):
nothing it labelled could be skipped, and a mistyped base would silently
become a full run. A base that was itself incremental brings its own base
along, newest first, so a daily run from yesterday's job skips everything
any run of the chain labelled.

The comparison is a disk-backed join, as ``diff`` does: both sides
are hash-partitioned by URI into files; each partition is joined alone
(memory: one partition of the base, ``PARTITION_RECORDS``); the kept
inputs of every partition, each numbered in listing order, are merged back
into that order. The join needs the whole listing before the first shard,
and temp disk for a row per listed input and per base record.
"""
import contextlib
import heapq
import json
import math
import tempfile
import zlib
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from pathlib import Path

from visionfleet.pipeline import layout
from visionfleet.pipeline.errors import ConfigError, InputError, VisionfleetError
from visionfleet.pipeline.job import Job, JobSpec
from visionfleet.pipeline.storage import storage_for
from visionfleet.pipeline.storage.base import Entry
from visionfleet.reports.outputs import JobOutput

PARTITION_RECORDS = 200_000
MAX_CHAIN = 1000  # bases followed back; a longer chain is a loop


def open_base(spec: JobSpec) -> list[JobOutput]:
    """The base job, then the base it was incremental from, and so on; ConfigError if one cannot be used."""
    chain, root = [], spec.incremental_from
    while root:
        if len(chain) == MAX_CHAIN:
            raise ConfigError(f"--incremental-from {spec.incremental_from}: its bases go back over {MAX_CHAIN} "
                              "jobs (or loop); give a job that labelled everything (a run without --incremental-from)")
        base = _finished(root)
        _check_same(spec, base)
        chain.append(base)
        root = base.summary.get("incremental_from")
    return chain


def _finished(root: str) -> JobOutput:
    try:
        base = JobOutput.open(root)
    except VisionfleetError as exc:
        raise ConfigError(f"--incremental-from: {exc}") from None
    if base.failed is not None:
        raise ConfigError(f"--incremental-from {root}: that job failed ({base.failed}); give a job that succeeded, "
                          "or finish this one first (`visionfleet resume`)")
    return base


def _check_same(spec: JobSpec, base: JobOutput) -> None:
    """The base ran what this job runs: its labels stand for this job's. Read from the job as it was
    planned (``_plan/job.json``, the same values its summary repeats)."""
    try:
        job = Job.from_dict(json.loads(storage_for(base.root).read(layout.job_file(base.root))))
    except InputError as exc:
        raise ConfigError(f"--incremental-from {base.root}: its job description cannot be read ({exc}); give "
                          "DEST/<job_id> of a job as relabel wrote it") from None
    ours = {"model": spec.model, "model_digest": spec.model_digest, "top k": spec.top_k}
    theirs = {"model": job.spec.model, "model_digest": job.spec.model_digest, "top k": job.spec.top_k}
    differ = [f"{name} {theirs[name]!r} there, {ours[name]!r} here" for name in ours if ours[name] != theirs[name]]
    if differ:
        raise ConfigError(f"--incremental-from {base.root} ran another model or setting ({'; '.join(differ)}): none "
                          "of its labels stand for this job's; drop --incremental-from to label everything, or "
                          "give a job of this model")


@contextlib.contextmanager
def unchanged_skipped(entries: Iterable[Entry], chain: list[JobOutput], *, embeddings: bool, preprocess: str,
                      scratch: str | None = None) -> Iterator[tuple[Iterator[Entry], int]]:
    """(the entries to label, in listing order; how many were skipped), valid inside the ``with``."""
    based = sum(int(base.summary.get("total") or 0) for base in chain)
    partitions = max(1, math.ceil(based / PARTITION_RECORDS))
    with tempfile.TemporaryDirectory(prefix="visionfleet-incremental-", dir=scratch) as tmp:
        work = Path(tmp)
        _split(work, "base", partitions, (_base_row(r, embeddings, preprocess) for base in chain for r in base.records()))
        _split(work, "new", partitions, ([n, uri, fp] for n, (uri, fp) in enumerate(entries)))
        skipped = sum(_join(work, p) for p in range(partitions))
        with ExitStack() as stack:
            kept = [_rows(stack.enter_context(open(work / f"kept-{p}.jsonl", encoding="utf-8")))
                    for p in range(partitions)]
            yield ((uri, fp) for _, uri, fp in heapq.merge(*kept, key=lambda row: row[0])), skipped


def _base_row(record: dict, embeddings: bool, preprocess: str) -> list:
    """[uri, fingerprint, whether the record stands for this job's]."""
    usable = (record.get("status") == "ok" and record.get("preprocess") == preprocess
              and (not embeddings or record.get("embedding") is not None))
    return [record["uri"], record.get("fingerprint"), usable]


def _split(work: Path, side: str, partitions: int, rows: Iterable[list]) -> None:
    """Each row into its URI's partition file, in the order given."""
    at = 0 if side == "base" else 1
    with ExitStack() as stack:
        files = [stack.enter_context(open(work / f"{side}-{p}.jsonl", "w", encoding="utf-8"))
                 for p in range(partitions)]
        for row in rows:
            uri = row[at]
            files[zlib.crc32(uri.encode("utf-8", "surrogatepass")) % partitions].write(json.dumps(row) + "\n")


def _rows(lines: Iterable[str]) -> Iterator[list]:
    return (json.loads(line) for line in lines)


def _join(work: Path, p: int) -> int:
    """Partition ``p``'s inputs to label into ``kept-p``; how many were skipped."""
    newest: dict[str, tuple] = {}
    with open(work / f"base-{p}.jsonl", encoding="utf-8") as f:
        for uri, fingerprint, usable in _rows(f):
            newest.setdefault(uri, (fingerprint, usable))  # the chain is read newest first
    skipped = 0
    with open(work / f"new-{p}.jsonl", encoding="utf-8") as f, \
            open(work / f"kept-{p}.jsonl", "w", encoding="utf-8") as kept:
        for line in f:
            _, uri, fingerprint = json.loads(line)
            base = newest.get(uri)
            # No fingerprint listed: the URI alone is compared (documented); else it must be the same.
            if base is not None and base[1] and (fingerprint is None or fingerprint == base[0]):
                skipped += 1
            else:
                kept.write(line)
    return skipped

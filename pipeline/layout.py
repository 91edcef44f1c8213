"""Every name the product writes under ``DEST/<job_id>/``, in one place.

- ``part-SSSSSS-AAAAAAA-BBBBBBB-tT.EXT``: records of URIs ``[A, B)`` of
  shard ``S``, written by the worker holding lease token ``T``; ``EXT`` is
  the output format's (``.jsonl``, ``.parquet``), so the output sink
  (``pipeline.sink``) adds it. A Parquet shard ends as one part, ``[0, end)``,
  that replaced its earlier ones. Only parts listed in the summary are output;
  any other is an orphan of a refused commit, or one replaced, and is never read.
- ``_plan/shard-SSSSSS.jsonl``: the URIs of shard ``S`` with their fingerprints,
  one ``[URI, FINGERPRINT]`` JSON array a line (``pipeline/shard_lists.py``; jobs
  planned before it: one JSON string a line, or ``shard-SSSSSS.txt``).
- ``_plan/job.json``, ``_plan/plan.json``: the job's description, and its
  totals once listing has finished (an incremental run's: also ``skipped``).
- ``_plan/model/``: the job's model package, pinned when it was planned
  (``pipeline/model_pin.py``): the files every worker of the job loads.
- ``_checkpoints/shard-SSSSSS.json``: the durable copy of shard ``S``'s
  checkpoint (offset, counts, parts), so progress outlives the state store.
- ``_engines/NAME.json``: what ran the job (model, runtime, precision, int8
  agreement), one note per distinct engine, written by the workers.
- ``_SUMMARY.json``: the summary (state, reason, counts, errors by kind, parts), written when
  the job ends, or stops early.
- ``_SUCCESS.json``: the same, written beside it only when the job succeeded.
- ``_REPORT.json``: what the run took and cost (``visionfleet report``), written just after.

Each name is given as the URI under a job's ``root`` (a ``Location``, or its string).
"""
from visionfleet.pipeline.location import Location

SUMMARY = "_SUMMARY.json"
SUCCESS = "_SUCCESS.json"
REPORT = "_REPORT.json"
PLAN_DIR = "_plan"
CHECKPOINT_DIR = "_checkpoints"
ENGINE_DIR = "_engines"


def _under(root: str | Location, *parts: str) -> str:
    return str(Location.parse(root).child(*parts))


def job_root(output: str | Location, job_id: str) -> str:
    return _under(output, job_id)


def dest_of(root: str, job_id: str) -> str:
    """The DEST a job's output folder ``root`` (``DEST/<job_id>``) was made under: what `--output` takes."""
    return root.removesuffix(job_id).rstrip("/") or "/"


def shard_list(root: str | Location, shard: int, *, legacy: bool = False) -> str:
    """``legacy``: the bare-lines list of a job planned before JSON Lines."""
    return _under(root, PLAN_DIR, f"shard-{shard:06d}.{'txt' if legacy else 'jsonl'}")


def part_stem(shard: int, start: int, end: int, token: str) -> str:
    """A part's name without its extension, which is the output format's."""
    return f"part-{shard:06d}-{start:07d}-{end:07d}-t{token}"


def child(root: str | Location, name: str) -> str:
    return _under(root, name)


def job_file(root: str | Location) -> str:
    """The job's description, kept beside its plan so it outlives the state store."""
    return _under(root, PLAN_DIR, "job.json")


def plan_file(root: str | Location) -> str:
    """Totals of a finished listing: ``{"total": N, "shards": M}``."""
    return _under(root, PLAN_DIR, "plan.json")


def pinned_model(root: str | Location, name: str) -> str:
    """A file of the job's pinned model package (``name``: its path in the package)."""
    return _under(root, PLAN_DIR, "model", name)


def checkpoint_file(root: str | Location, shard: int) -> str:
    return _under(root, CHECKPOINT_DIR, f"shard-{shard:06d}.json")


def checkpoint_shard(uri: str) -> int:
    """The shard a durable checkpoint copy (``checkpoint_file``) is of."""
    return int(uri.rsplit("shard-", 1)[1].split(".", 1)[0])


def engine_note(root: str | Location, name: str) -> str:
    return _under(root, ENGINE_DIR, f"{name}.json")

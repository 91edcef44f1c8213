"""Resuming a job from what is durable under its output.

``visionfleet resume`` works whether or not the state store still knows
the job: when it does not (Redis wiped, the whole fleet lost), the job is
rebuilt from ``_plan/`` and the durable checkpoint copies, then every shard
that has not ended is enqueued again, and every failed one too (unless
asked not to): its failure is cleared and it goes on from its last commit.
A job that failed before every shard ended (it stopped early) runs again.
Finished shards are never redone; a shard's committed range is skipped; a
message that turns out to be redundant finds its shard done or leased and
costs nothing. A cancelled job is left alone unless forced (someone chose
to stop it); an interrupted one is no longer marked so once resumed.
"""
import json
import logging
import os
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field

from visionfleet.checkpoints.finalize import finalize_if_complete
from visionfleet.checkpoints.hooks import NO_HOOKS, Hooks
from visionfleet.checkpoints.job_book import Progress
from visionfleet.checkpoints.shard_leases import Checkpoint
from visionfleet.checkpoints.state import StateStore
from visionfleet.pipeline import layout
from visionfleet.pipeline.errors import ConfigError, InputError
from visionfleet.pipeline.job import Job
from visionfleet.pipeline.storage import is_oss, storage_for

log = logging.getLogger(__name__)


def _read_json(uri: str, missing: str) -> dict:
    try:
        return json.loads(storage_for(uri).read(uri))
    except InputError:
        raise ConfigError(missing) from None


def rebuild(store: StateStore, root: str, job_id: str) -> int:
    """Recreate a job the store has lost from its durable files; the number of shards restored."""
    missing = f"no job {job_id} under {root}; check the job id and --output"
    job = Job.from_dict(_read_json(layout.job_file(root), missing))
    plan = _read_json(layout.plan_file(root), f"listing of job {job_id} never finished; start the job again")
    store.create_job(job_id, job.to_dict())
    store.set_planned(job_id, plan["total"], plan["shards"], plan.get("skipped", 0))
    copies = job.sink().checkpoints()
    for shard, data in copies:
        store.restore_shard(job_id, shard, Checkpoint.from_dict(data))
    log.info("job rebuilt from durable checkpoints", extra={"job_id": job_id, "shards_restored": len(copies)})
    return len(copies)


def _same_place(root: str) -> str:
    return root if is_oss(root) else os.path.abspath(root)


@dataclass
class Resumed:
    """What a resume enqueued: every shard's index, and which of them had failed."""

    shards: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)


def refuse_cancelled(progress: Progress | None, output: str) -> None:
    """A cancelled job is resumed only with ``force``: stop here, saying so and how to force it."""
    if progress is not None and progress.state == "cancelled":
        why = f" ({progress.reason})" if progress.reason else ""
        raise ConfigError(f"job {progress.job_id} was cancelled{why}; nothing was enqueued. To label what it left "
                          f"all the same: `visionfleet resume {progress.job_id} --output {shlex.quote(output)} --force`")


def resume_job(store: StateStore, output: str, job_id: str, send_shard: Callable[[str, int], None], *,
               failed_too: bool = True, force: bool = False, hooks: Hooks = NO_HOOKS) -> Resumed:
    """Enqueue every shard of the job that has not ended, and with ``failed_too`` every failed one
    (its failure cleared first, and the job's); the job's final state is set (``hooks`` told) if nothing is left.
    A cancelled job raises ConfigError unless ``force``, which revives it."""
    root = layout.job_root(output, job_id)
    if store.progress(job_id) is None:
        rebuild(store, root, job_id)
    known = Job.from_dict(store.job_meta(job_id)).root
    if _same_place(known) != _same_place(root):
        raise ConfigError(f"job {job_id} writes to {known}, not {root}; give --output {layout.dest_of(known, job_id)}")
    progress = store.progress(job_id)
    if not progress.planned:
        raise ConfigError(f"job {job_id} is still being planned (or its planner died); start the job again")
    if not force:
        refuse_cancelled(progress, output)
    if progress.interrupted or progress.state == "cancelled":
        store.clear_state(job_id)  # before any message goes out: a worker must not find it cancelled
    resumed = Resumed()
    retried = sorted(progress.failed_shards) if failed_too else []
    # A failed job with shards unfinished (stopped early) runs again even when its failed shards stay failed.
    if retried or (progress.state == "failed" and (failed_too or not progress.complete)):
        # Cleared before any message goes out: a worker must not find the shard, or the job, still failed.
        resumed.failed = sorted(store.reopen(job_id, retried))
    for shard in range(progress.shards):
        checkpoint = store.checkpoint(job_id, shard)
        if not checkpoint.done and not checkpoint.failed:
            send_shard(job_id, shard)
            resumed.shards.append(shard)
    finalize_if_complete(store, job_id, hooks)  # every shard may have ended before the summary was written
    return resumed

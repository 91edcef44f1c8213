"""Ending a job: once every shard has ended, write the summary and the state, and tell the hooks
(the run report is one: ``reports.run.RunReport``).

Any worker that ends a shard (and the planner, when it finishes) calls
``finalize_if_complete``. It is idempotent: two callers racing write the
same summary from the same committed state, so no claim is needed.
"""
import json
import logging
import time

from visionfleet.checkpoints.hooks import Hooks
from visionfleet.checkpoints.job_book import FINAL_STATES
from visionfleet.checkpoints.state import StateStore
from visionfleet.pipeline import layout
from visionfleet.pipeline.job import Job
from visionfleet.pipeline.storage import storage_for
from visionfleet.pipeline.words import count

log = logging.getLogger(__name__)


def finalize_if_complete(store: StateStore, job_id: str, hooks: Hooks) -> str | None:
    """The job's final state if it just ended (or had), else None; ``hooks`` hear of it when it just ended."""
    progress = store.progress(job_id)
    if progress is None or not progress.complete:
        return None
    if progress.state in FINAL_STATES:
        return progress.state
    reason = None
    if progress.failed_shards:
        reason = f"{count(len(progress.failed_shards), 'shard')} failed; see `visionfleet status {job_id}`"
    elif progress.done != progress.total:
        reason = f"committed {progress.done} records for {progress.total} inputs"
    if reason is not None:
        store.set_state(job_id, "failed", reason)
        log.error("job failed", extra={"job_id": job_id, "reason": reason})
        hooks.on_job_end(store, job_id, "failed")
        return "failed"
    job = Job.from_dict(store.job_meta(job_id))
    root = job.root
    summary = {
        "job_id": job_id, "model": job.spec.model, "source": job.spec.source, "total": progress.total,
        "ok": progress.ok, "errors": progress.errors, "parts": store.parts(job_id),
        "created_at": progress.created_at, "finished_at": time.time(), **_engines(root),
    }
    job.sink().finalise(summary)
    store.set_state(job_id, "succeeded")
    hooks.on_job_end(store, job_id, "succeeded")
    log.info("job succeeded", extra={"job_id": job_id, "total": progress.total, "errors": progress.errors})
    return "succeeded"


def _engines(root: str) -> dict:
    """What ran the job, from the workers' notes: ``runtime`` and ``precision`` (``mixed`` when
    workers differed), the int8 agreement when int8 ran alone, and every note."""
    storage = storage_for(root)
    notes = [json.loads(storage.read(uri)) for uri in storage.list(layout.child(root, layout.ENGINE_DIR))]
    out: dict = {"engines": notes}
    for key in ("runtime", "precision", "int8_agreement"):
        values = {note.get(key) for note in notes}
        if len(values) == 1 and None not in values:
            out[key] = values.pop()
        elif key != "int8_agreement" and notes:
            out[key] = "mixed"
    return out

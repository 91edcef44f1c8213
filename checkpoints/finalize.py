"""Ending a job: once every shard has ended, write the summary and the state, and tell the hooks
(the run report is one: ``reports.run.RunReport``); or end it early, when its first records say
the rest would fail the same way (``verdict``).

Any worker that ends a shard (and the planner, when it finishes) calls
``finalize_if_complete``. It is idempotent: two callers racing write the
same summary from the same committed state, so no claim is needed.
"""
import json
import logging
import shlex
import time

from visionfleet.checkpoints import verdict
from visionfleet.checkpoints.hooks import Hooks
from visionfleet.checkpoints.job_book import FINAL_STATES, Progress
from visionfleet.checkpoints.state import StateStore
from visionfleet.checkpoints.verdict import may_stop_early, stopped_early, too_many_errors
from visionfleet.pipeline import layout
from visionfleet.pipeline.faults import infrastructure
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
    job = Job.from_dict(store.job_meta(job_id))
    reason = _failure(store, job, progress)
    state = "succeeded" if reason is None else "failed"
    _write_summary(store, job, progress, state, reason)
    store.set_state(job_id, state, reason)
    _ended(store, job_id, state, reason, hooks)
    return state


def stop_early_if_due(store: StateStore, job: Job, progress: Progress, hooks: Hooks) -> bool:
    """After a commit that left the job at ``progress``: end it as failed, its summary written, when its
    first records say the rest would fail the same way (``verdict``); True if it has.

    The summary first, then the state (so whoever sees the state finds the summary): from then on the
    store refuses the job's commits. One that slipped in between shows in a second look, and the
    summary and the reason are written again from the counts, which no longer move."""
    if not may_stop_early(progress, job.spec.max_error_rate):
        return False
    kinds = store.error_kinds(job.job_id)
    dest = shlex.quote(layout.dest_of(job.root, job.job_id))
    commands = (f"visionfleet resume {job.job_id} --output {dest}",
                f"visionfleet relabel {shlex.quote(job.spec.source)} --output {dest}")
    reason = stopped_early(progress, kinds, job.spec.max_error_rate, *commands)
    if reason is None:
        return False
    _write_summary(store, job, progress, "failed", reason)
    store.set_state(job.job_id, "failed", reason)
    frozen = store.progress(job.job_id)
    if (frozen.ok, frozen.errors) != (progress.ok, progress.errors):
        reason = stopped_early(frozen, kinds, job.spec.max_error_rate, *commands)
        _write_summary(store, job, frozen, "failed", reason)
        store.set_state(job.job_id, "failed", reason)
    _ended(store, job.job_id, "failed", reason, hooks)
    return True


def _failure(store: StateStore, job: Job, progress: Progress) -> str | None:
    """Why a job whose every shard has ended failed; None if it succeeded."""
    if progress.failed_shards:
        return f"{count(len(progress.failed_shards), 'shard')} failed; see `visionfleet status {job.job_id}`"
    if progress.done != progress.total:
        return f"committed {progress.done} records for {progress.total} inputs"
    return too_many_errors(progress, store.error_kinds(job.job_id), job.spec.max_error_rate)


def _write_summary(store: StateStore, job: Job, progress: Progress, state: str, reason: str | None) -> None:
    """``_SUMMARY.json`` (and ``_SUCCESS.json`` if it succeeded). A failed job's is written if it can be:
    its output may be what failed, and its state is set all the same."""
    try:
        kinds = verdict.by_count(store.error_kinds(job.job_id))
        summary = {
            "job_id": job.job_id, "state": state, "reason": reason, "model": job.spec.model,
            "model_digest": job.spec.model_digest, "source": job.spec.source,
            "total": progress.total, "ok": progress.ok, "errors": progress.errors,
            "unlabelled": verdict.unlabelled(progress), "max_error_rate": job.spec.max_error_rate,
            "error_kinds": {kind: {"count": e.count, "example": e.example} for kind, e in kinds},
            "parts": store.parts(job.job_id), "created_at": progress.created_at, "finished_at": time.time(),
            "embeddings": job.spec.embeddings, **_engines(job.root),
        }
        if job.spec.incremental_from:  # the base's unchanged inputs: counted here, their records stay there
            summary.update(skipped=progress.skipped, incremental_from=job.spec.incremental_from)
        job.sink().finalise(summary)
    except Exception as exc:
        if state == "succeeded" or infrastructure(exc) is not None:
            raise  # not ended: whoever ends a shard next (or this one, once the fault passes) tries again
        log.warning("summary of a failed job not written", extra={
            "job_id": job.job_id, "error": f"{type(exc).__name__}: {exc}"})


def _ended(store: StateStore, job_id: str, state: str, reason: str | None, hooks: Hooks) -> None:
    if state == "failed":
        log.error("job failed", extra={"job_id": job_id, "reason": reason})
    else:
        log.info("job succeeded", extra={"job_id": job_id})
    hooks.on_job_end(store, job_id, state)


def _engines(root: str) -> dict:
    """What ran the job, from the workers' notes: ``model_version``, ``runtime`` and ``precision``
    (``mixed`` when workers differed), the int8 agreement when int8 ran alone, the embedding's length when
    the job asked for embeddings (one model: one length), and every note."""
    storage = storage_for(root)
    notes = [json.loads(storage.read(uri)) for uri in storage.list(layout.child(root, layout.ENGINE_DIR))]
    out: dict = {"engines": notes}
    versions = {note.get("model_version") for note in notes}  # None: a model that names none
    out["model_version"] = versions.pop() if len(versions) == 1 else "mixed" if versions else None
    for key in ("runtime", "precision", "int8_agreement", "embedding_dim"):
        values = {note.get(key) for note in notes}
        if len(values) == 1 and None not in values:
            out[key] = values.pop()
        elif key in ("runtime", "precision") and notes:
            out[key] = "mixed"
    return out

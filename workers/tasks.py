"""Celery tasks: thin wrappers mapping shard outcomes to acks and messages.

A shard's message is acked only once its shard has ended, or has been handed
back by a new message (or the same one put back). An infrastructure fault,
wherever it strikes, is waited out inside the task (``FaultWait``): the
message stays unacked meanwhile, so a process that waits takes no new shard.
"""
import logging

from celery import shared_task
from celery.exceptions import Reject

from visionfleet.broker.routes import CLASSIFY_TASK, RELABEL_SHARD_TASK, SENT_AT_HEADER
from visionfleet.checkpoints.job_book import FINAL_STATES
from visionfleet.pipeline import shard_lists
from visionfleet.pipeline.access import MAX_URI_BYTES
from visionfleet.pipeline.errors import ConfigError
from visionfleet.pipeline.faults import infrastructure
from visionfleet.pipeline.job import Job
from visionfleet.pipeline.records import error_record
from visionfleet.pipeline.storage import storage_for
from visionfleet.workers import drain
from visionfleet.workers.fault_wait import Interrupted
from visionfleet.workers.heartbeat import LAPSE_AFTER_BEATS
from visionfleet.workers.process import context
from visionfleet.workers.shard_runner import Outcome, ShardRun

log = logging.getLogger(__name__)

MAX_LOAD_TRIES = 3
MAX_JOB_ID = 128


@shared_task(name=RELABEL_SHARD_TASK, bind=True, acks_late=True, ignore_result=True, max_retries=None)
def relabel_shard(self, job_id: str, shard: int) -> str:
    """Label shard ``shard`` of job ``job_id`` from its last checkpoint to its end."""
    if not (isinstance(job_id, str) and len(job_id) <= MAX_JOB_ID and isinstance(shard, int) and shard >= 0):
        log.error("malformed shard message dropped", extra={"job_id": repr(job_id)[:200], "shard": repr(shard)[:50]})
        return Outcome.UNKNOWN_JOB.value
    ctx = context()
    try:
        return ctx.faults.ride_out(lambda: _relabel(self, ctx, job_id, shard), job_id=job_id, shard=shard)
    except Interrupted as exc:
        # Drained while a fault lasted: the message goes back as it is, unacked until then
        # (with the broker out too, it stays unacked and is redelivered once the broker is back).
        raise Reject(str(exc), requeue=True) from exc


def _relabel(task, ctx, job_id: str, shard: int) -> str:
    """One try at the shard; an infrastructure fault leaves it, to be waited out and tried again."""
    stored = ctx.store.job_meta(job_id)
    if stored is None:
        log.error("unknown job: message dropped", extra={"job_id": job_id, "shard": shard})
        return Outcome.UNKNOWN_JOB.value
    progress = ctx.store.progress(job_id)
    state = progress.state
    if state in FINAL_STATES:  # e.g. failed by another shard's model check: do not load it again
        log.info("job has ended: message dropped", extra={"job_id": job_id, "shard": shard, "state": state})
        return Outcome.DONE.value
    try:
        job = Job.from_dict(stored)
    except ConfigError as exc:  # every worker would read the same record: the job cannot run
        _fail_job(ctx, job_id, str(exc), "its stored description cannot be read")
        return Outcome.FAILED.value
    # Where the job writes is known now: a full disk there reads "output disk full".
    return ctx.faults.ride_out(lambda: _run(task, ctx, job, progress, shard), job_id=job_id, shard=shard,
                               output=job.root)


def _run(task, ctx, job: Job, progress, shard: int) -> str:
    """Check what the job may touch, get its labeller, run the shard, and map the outcome to messages."""
    job_id = job.job_id
    access = ctx.access_for(job)
    try:  # before anything is imported, read or written for this job
        access.check_model(job.spec.model)
        for place in filter(None, (job.root, job.spec.calibration)):
            access.check_place(place)
    except ConfigError as exc:
        _fail_job(ctx, job_id, str(exc))
        return Outcome.FAILED.value
    if not _planned_shard(progress, job, shard):
        log.error("no such shard in the job's plan: message dropped", extra={"job_id": job_id, "shard": shard})
        return Outcome.UNKNOWN_JOB.value
    labeller = _labeller(task, ctx, job)
    if labeller is None:
        return Outcome.FAILED.value
    run = ShardRun(ctx.store, labeller, ctx.settings, ctx.owner, should_stop=drain.draining, cache=ctx.cache,
                   activity=ctx.activity, check=access.check_uri, hooks=ctx.hooks, faults=ctx.faults)
    outcome = run.run(job, shard)
    if outcome is Outcome.HANDED_BACK:
        # Published before this message is acked: a crash in between leaves
        # two messages, and the second finds the shard done or leased.
        task.app.send_task(RELABEL_SHARD_TASK, args=[job_id, shard])
        ctx.store.note(job_id, "drains")
        if drain.spot_noticed():
            ctx.store.note(job_id, "spot_notices")
    elif outcome is Outcome.BUSY:
        # A live worker holds the lease; look again once it could have expired, or its beats lapsed.
        raise task.retry(countdown=min(ctx.settings.lease_ttl_s / 2, ctx.settings.heartbeat_s * LAPSE_AFTER_BEATS))
    return outcome.value


def _planned_shard(progress, job: Job, shard: int) -> bool:
    """Whether the plan has this shard, before any state is kept for it: a shard the plan does not have
    would leave keys that no end of the job expires. While planning goes on, its list is written first."""
    if progress.planned:
        return shard < progress.shards
    return storage_for(job.root).exists(shard_lists.path(job, shard))


def _labeller(task, ctx, job: Job):
    """The job's labeller; None once the job is failed because its model cannot run.

    The spec itself wrong (ConfigError: unknown model, missing file, int8 gate)
    fails the job at once: every worker would say the same. An infrastructure
    fault while preparing it (storage failing while calibrating, a full disk)
    is waited out like a shard's. Anything else at load (a corrupt file, a
    runtime missing here, out of memory) may be this worker's own: the message
    is tried again, by whichever worker takes it, up to MAX_LOAD_TRIES times in
    all, then the job fails with the reason.
    """
    tries = task.request.retries + 1
    try:
        return ctx.labellers.for_job(job)
    except ConfigError as exc:
        _fail_job(ctx, job.job_id, f"model {job.spec.model} cannot run: {exc}")
        return None
    except Exception as exc:
        if infrastructure(exc) is not None:
            raise
        reason = f"{type(exc).__name__}: {exc}"
        if tries >= MAX_LOAD_TRIES:
            _fail_job(ctx, job.job_id, f"model {job.spec.model} failed to load {tries} times: {reason}")
            return None
        log.warning("model failed to load: trying again", extra={"job_id": job.job_id, "try": tries,
                                                                   "error": reason})
        raise task.retry(countdown=_backoff(tries - 1)) from exc


def _fail_job(ctx, job_id: str, reason: str, why: str = "its model cannot run") -> None:
    ctx.store.set_state(job_id, "failed", reason)
    log.error(f"job failed: {why}", extra={"job_id": job_id, "error": reason})


def _backoff(retries: int) -> float:
    return min(2 ** retries, 60)


@shared_task(name=CLASSIFY_TASK, bind=True, acks_late=True)
def classify(self, uri: str, model: str | None = None) -> dict:
    """Label one image (``oss://...`` or a path the worker can read): the bulk output's record.

    ``model``: a model spec this worker allows (``VISIONFLEET_MODELS``); none, the worker's own."""
    if not isinstance(uri, str):
        return error_record(repr(uri)[:200], "not a URI: give one oss://bucket/key or path string")
    if model is not None and not (isinstance(model, str) and 0 < len(model) <= MAX_URI_BYTES):
        return error_record(uri, "not a model spec: give a string such as efficientnet_lite0 or "
                                 "/models/colors/model.onnx, or none for the worker's own model")
    sent_at = getattr(self.request, SENT_AT_HEADER, None)
    return context().online().classify(uri, sent_at if isinstance(sent_at, (int, float)) else None, model)

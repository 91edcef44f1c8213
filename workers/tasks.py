"""Celery tasks: thin wrappers mapping shard outcomes to acks and messages."""
import logging

from celery import shared_task

from visionfleet.broker.routes import CLASSIFY_TASK, RELABEL_SHARD_TASK
from visionfleet.checkpoints.state import FINAL_STATES
from visionfleet.pipeline.errors import ConfigError, RetryableError
from visionfleet.workers import drain
from visionfleet.workers.heartbeat import LAPSE_AFTER_BEATS, beat_every_s
from visionfleet.workers.process import context
from visionfleet.workers.shard_runner import Outcome, ShardRun

log = logging.getLogger(__name__)

MAX_STORAGE_RETRIES = 8


@shared_task(name=RELABEL_SHARD_TASK, bind=True, acks_late=True, ignore_result=True, max_retries=None)
def relabel_shard(self, job_id: str, shard: int) -> str:
    """Label shard ``shard`` of job ``job_id`` from its last checkpoint to its end."""
    ctx = context()
    meta = ctx.store.job_meta(job_id)
    if meta is None:
        log.error("unknown job: message dropped", extra={"job_id": job_id, "shard": shard})
        return Outcome.UNKNOWN_JOB.value
    state = ctx.store.progress(job_id).state
    if state in FINAL_STATES:  # e.g. failed by another shard's model check: do not load it again
        log.info("job has ended: message dropped", extra={"job_id": job_id, "shard": shard, "state": state})
        return Outcome.DONE.value
    try:
        labeller = ctx.labellers.for_job(meta)
    except ConfigError as exc:  # the job's model cannot run here (bad spec, int8 gate): fail it, say why
        ctx.store.set_state(job_id, "failed", f"model {meta['model']} cannot run: {exc}")
        log.error("job failed: model cannot run", extra={"job_id": job_id, "error": str(exc)})
        return Outcome.FAILED.value
    run = ShardRun(ctx.store, labeller, ctx.settings, ctx.owner, should_stop=drain.draining, cache=ctx.cache(),
                   activity=ctx.activity)
    try:
        outcome = run.run(job_id, shard)
    except RetryableError as exc:
        if self.request.retries >= MAX_STORAGE_RETRIES:
            run.give_up(job_id, shard, f"storage kept failing: {exc}")
            return Outcome.FAILED.value
        # Retry publishes the new message before this one is acked: never lost.
        raise self.retry(countdown=min(2 ** self.request.retries, 60)) from exc
    if outcome is Outcome.HANDED_BACK:
        # Published before this message is acked: a crash in between leaves
        # two messages, and the second finds the shard done or leased.
        self.app.send_task(RELABEL_SHARD_TASK, args=[job_id, shard])
    elif outcome is Outcome.BUSY:
        # A live worker holds the lease; look again once it could have expired, or its beats lapsed.
        raise self.retry(countdown=min(ctx.settings.lease_ttl_s / 2, beat_every_s() * LAPSE_AFTER_BEATS))
    return outcome.value


@shared_task(name=CLASSIFY_TASK, bind=True, acks_late=True)
def classify(self, uri: str) -> dict:
    """Label one image (``oss://...`` or a path the worker can read): the bulk output's record."""
    return context().online().classify(uri)

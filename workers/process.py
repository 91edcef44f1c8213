"""What a worker process holds for its whole life: models, store, services.

Models load once per process, at start, and are reused by every task:
bulk workers (prefork) load in each pool child after the fork
(``worker_process_init``; never in the parent, torch's thread pools do not
survive a fork); online workers (threads pool, one process) load when the
worker starts (``worker_init``).
"""
import logging
import os
import socket
import uuid
from dataclasses import replace

import redis
from celery.signals import worker_init, worker_process_init, worker_process_shutdown

from visionfleet.broker.routes import RELABEL_SHARD_TASK
from visionfleet.checkpoints import StateStore, open_store
from visionfleet.pipeline.access import Access
from visionfleet.pipeline.job import Job
from visionfleet.pipeline.process_metrics import PROCESSES_READY
from visionfleet.workers import allocator, drain, settings as process_settings
from visionfleet.workers.cache import RedisLabelCache
from visionfleet.workers.fault_wait import FaultWait
from visionfleet.workers.heartbeat import Activity, Heartbeat, reap_dead_here
from visionfleet.workers.watchers import worker_hooks
from visionfleet.workers.labeller_pool import LabellerPool
from visionfleet.broker.counters import Counters
from visionfleet.workers.online_models import OnlineModels
from visionfleet.workers.settings import Settings
from visionfleet.workers.takeover import Sweeper

log = logging.getLogger(__name__)


class ProcessContext:
    def __init__(self, settings: Settings) -> None:
        self.model, self.online_settings = settings.model, settings.online
        self.settings, self.runtime, self.load = settings.worker, settings.runtime, settings.load
        broker = settings.broker
        state_url = broker.state_url
        self.store: StateStore = open_store(state_url, job_ttl_s=broker.job_ttl_s, namespace=broker.namespace)
        self.embedded_job = broker.embedded_run if broker.embedded else None
        self.namespace = broker.namespace
        self.access = settings.access
        shared = state_url.startswith(("redis", "unix"))
        self.redis = redis.Redis.from_url(state_url, decode_responses=True) if shared else None
        self.metrics = Counters(self.redis, broker.namespace)
        # The dedup cache, where there is a Redis to keep it in: one per process, so the hit and miss
        # counts it holds until a batch's put (a shard handed back mid-batch) go with a later one.
        self.cache = RedisLabelCache(self.redis, self.settings.cache_ttl_s, self.namespace) if shared else None
        self.hooks = worker_hooks(self.metrics, settings.prices)  # what watches the shards this process runs
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.labellers = LabellerPool(self.runtime, self.load, self.owner)
        self.activity = Activity(metrics_port=self.settings.metrics_port, instance=self.settings.instance)
        self.heartbeat = Heartbeat(self.store, self.owner, self.activity, self.settings.heartbeat_s)
        self.faults = FaultWait(self.activity, self.settings, should_stop=drain.draining)  # what it waits out
        self._online: OnlineModels | None = None

    def online(self) -> OnlineModels:
        if self._online is None:
            self._online = OnlineModels(self.labellers, self.model, self.access, self.online_settings, self.cache,
                                        self.metrics)
        return self._online

    def access_for(self, job: Job) -> Access:
        """What this worker may touch for a job: its settings, and in an embedded run, what its own job names."""
        return self.access.for_job(job.spec) if job.job_id == self.embedded_job else self.access


_context: ProcessContext | None = None
_app = None  # the Celery app this worker runs: where a sweeper sends the shards it finds


def context() -> ProcessContext:
    """This process's context, built on first use from the settings its edge handed over."""
    global _context
    if _context is None:
        _context = ProcessContext(process_settings.current())
    return _context


def _ready(what: str, labeller=None) -> None:
    """The process's model is loaded: warmed (a fleet's, whose readiness waits for it), it counts as ready."""
    ctx = context()
    if labeller is not None and ctx.embedded_job is None:
        labeller.warm_up()
    PROCESSES_READY.set(1)
    log.info("worker process ready", extra={"role": what, "owner": ctx.owner, "allocator": allocator.describe(),
                                             "threads": ctx.runtime.threads})


@worker_process_init.connect
def _preload_bulk(**_) -> None:
    ctx = context()
    reap_dead_here(ctx.store)  # e.g. this machine's worker before a crash: its shards are free now
    ctx.heartbeat.start()
    Sweeper(ctx.store, _send_shard, ctx.settings.heartbeat_s, job_id=ctx.embedded_job).start()  # sends those at once
    labeller = None
    if ctx.runtime.precision != "int8" or ctx.runtime.calibration:  # else each job brings its calibration
        labeller = ctx.labellers.default(ctx.model)
    _ready("bulk", labeller)


def _send_shard(job_id: str, shard: int) -> None:
    _app.send_task(RELABEL_SHARD_TASK, args=[job_id, shard])


@worker_process_shutdown.connect
def _say_goodbye(**_) -> None:
    if _context is not None:
        _context.heartbeat.stop()
        _context.labellers.close()


@worker_init.connect
def _start(sender=None, **_) -> None:
    """The worker's main process, before its pool forks; under ``celery -A``, its start is the edge
    (``settings.at_worker_start``)."""
    global _app
    _app = sender.app
    settings = process_settings.at_worker_start(sender.app)
    if settings.worker.instance is None:  # under `celery -A`, no command of ours above: this node is the instance
        settings = replace(settings, worker=replace(settings.worker, instance=sender.hostname))
        process_settings.use(settings)
    if settings.role == "online":
        online = context().online()
        _ready("online", online.service(online.default).labeller)  # its own model loads now, as before

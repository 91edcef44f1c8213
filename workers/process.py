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

import redis
from celery.signals import worker_init, worker_process_init, worker_process_shutdown

from visionfleet.broker.routes import NAMESPACE, RELABEL_SHARD_TASK
from visionfleet.broker.settings import BrokerSettings
from visionfleet.checkpoints import StateStore, open_store
from visionfleet.pipeline.access import Access
from visionfleet.pipeline.envvars import env_str
from visionfleet.pipeline.engines import RuntimeSettings
from visionfleet.pipeline.job import Job
from visionfleet.pipeline.labeller import LoadSettings
from visionfleet.pipeline.models import DEFAULT_MODEL
from visionfleet.pipeline.telemetry import PROCESSES_READY
from visionfleet.workers import allocator, drain
from visionfleet.workers.cache import RedisLabelCache
from visionfleet.workers.fault_wait import FaultWait
from visionfleet.workers.heartbeat import Activity, Heartbeat, beat_every_s, reap_dead_here
from visionfleet.workers.hooks import worker_hooks
from visionfleet.workers.labellers import Labellers
from visionfleet.broker.metrics import Metrics
from visionfleet.workers.online import OnlineService, OnlineSettings
from visionfleet.workers.settings import WorkerSettings
from visionfleet.workers.takeover import Sweeper

log = logging.getLogger(__name__)

ROLE_ENV = "VISIONFLEET_ROLE"  # "online" or "bulk": set by `visionfleet worker`


class ProcessContext:
    def __init__(self) -> None:
        self.settings = WorkerSettings.from_env()
        self.runtime = RuntimeSettings.from_env()
        self.load = LoadSettings.from_env()
        broker = BrokerSettings.from_env()
        state_url = broker.state_url
        self.store: StateStore = open_store(state_url, job_ttl_s=broker.job_ttl_s, namespace=NAMESPACE)
        self.embedded_job = broker.embedded_run if broker.embedded else None
        self.access = Access.from_env()
        shared = state_url.startswith(("redis", "unix"))
        self.redis = redis.Redis.from_url(state_url, decode_responses=True) if shared else None
        self.metrics = Metrics(self.redis, NAMESPACE)
        self.hooks = worker_hooks(self.metrics)  # what watches the shards this process runs
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.labellers = Labellers(self.runtime, self.load, self.owner)
        self.activity = Activity()
        self.heartbeat = Heartbeat(self.store, self.owner, self.activity, beat_every_s())
        self.faults = FaultWait(self.activity, self.settings, should_stop=drain.draining)  # what it waits out
        self._online: OnlineService | None = None

    def cache(self) -> RedisLabelCache | None:
        """The dedup cache, where there is a Redis to keep it in."""
        return RedisLabelCache(self.redis, self.settings.cache_ttl_s, NAMESPACE) if self.redis is not None else None

    def online(self) -> OnlineService:
        if self._online is None:
            settings = OnlineSettings.from_env()
            self._online = OnlineService(self.labellers.default(default_model()), settings, self.cache(), self.metrics,
                                         check=self.access.check_uri)
        return self._online

    def access_for(self, job: Job) -> Access:
        """What this worker may touch for a job: its settings, and in an embedded run, what its own job names."""
        return Access.from_env(job.spec) if job.job_id == self.embedded_job else self.access


def default_model() -> str:
    return env_str("VISIONFLEET_MODEL", DEFAULT_MODEL)


_context: ProcessContext | None = None


def context() -> ProcessContext:
    """This process's context, built on first use."""
    global _context
    if _context is None:
        _context = ProcessContext()
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
    Sweeper(ctx.store, _send_shard, beat_every_s(), job_id=ctx.embedded_job).start()  # sends those at once
    labeller = None
    if ctx.runtime.precision != "int8" or ctx.runtime.calibration:  # else each job brings its calibration
        labeller = ctx.labellers.default(default_model())
    _ready("bulk", labeller)


def _send_shard(job_id: str, shard: int) -> None:
    from visionfleet.broker.celery_app import app  # the app this worker runs: built already

    app.send_task(RELABEL_SHARD_TASK, args=[job_id, shard])


@worker_process_shutdown.connect
def _say_goodbye(**_) -> None:
    if _context is not None:
        _context.heartbeat.stop()


@worker_init.connect
def _preload_online(**_) -> None:
    if os.environ.get(ROLE_ENV) == "online":
        _ready("online", context().online().labeller)

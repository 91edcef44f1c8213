"""What a worker process runs with: read from the environment once, at the process's edge, and passed down.

The edge is ``visionfleet worker`` (and the embedded command, which checks its workers' settings before
it starts them), or, under ``celery -A visionfleet.broker.celery_app worker``, the worker's start
(``at_worker_start``). Celery's signal handlers take no arguments, so the edge hands the settings
over with ``use``; pool processes inherit them with the fork.
"""
from dataclasses import dataclass

from visionfleet.broker.scaling import Policy
from visionfleet.broker.settings import BrokerSettings
from visionfleet.pipeline.access import Access
from visionfleet.pipeline.engines import RuntimeSettings
from visionfleet.pipeline.envvars import env_float, env_int, env_str
from visionfleet.pipeline.labeller import LoadSettings
from visionfleet.pipeline.job import DEFAULT_MODEL
from visionfleet.reports.run import Price, prices_from_env
from visionfleet.workers.exporter import SERVED_PORT_ENV, ExporterSettings
from visionfleet.workers.online import OnlineSettings


# Given by `visionfleet worker` to the Celery workers it starts: the instance they belong to (its -n name).
INSTANCE_ENV = "VISIONFLEET_INSTANCE"


@dataclass(frozen=True)
class WorkerSettings:
    """How a worker process runs shards, says what it does, and stops."""

    commit_every: int = 1000
    commit_interval_s: float = 30.0
    lease_ttl_s: float = 120.0
    max_takeovers: int = 3
    drain_deadline_s: float = 20.0
    cache_ttl_s: int = 7 * 24 * 3600
    fault_backoff_max_s: float = 30.0  # the longest pause between tries while a fault lasts
    fault_log_every_s: float = 60.0  # how often a worker that waits says so in its log
    heartbeat_s: float = 5.0
    metrics_port: int | None = None  # where the command above serves this process's metrics (for `stats`)
    spot_notice_url: str = "auto"  # a URL to poll, off, or auto: Alibaba's, on Alibaba Cloud ECS (``drain``)
    spot_poll_s: float = 5.0
    parent_pid: int | None = None  # the command that started this worker: it drains and exits when that is gone
    instance: str | None = None  # the `visionfleet worker` it belongs to, in its beats; None: not known yet

    @classmethod
    def from_env(cls) -> "WorkerSettings":
        served, parent = env_str(SERVED_PORT_ENV, ""), env_str("VISIONFLEET_PARENT_PID", "")
        return cls(
            commit_every=env_int("VISIONFLEET_COMMIT_EVERY", 1000),
            commit_interval_s=env_float("VISIONFLEET_COMMIT_INTERVAL_S", 30.0, minimum=0.1),
            lease_ttl_s=env_float("VISIONFLEET_LEASE_TTL_S", 120.0, minimum=1.0),
            max_takeovers=env_int("VISIONFLEET_MAX_TAKEOVERS", 3, maximum=100),
            drain_deadline_s=env_float("VISIONFLEET_DRAIN_DEADLINE_S", 20.0, minimum=1.0),
            cache_ttl_s=env_int("VISIONFLEET_CACHE_TTL_S", 7 * 24 * 3600),
            fault_backoff_max_s=env_float("VISIONFLEET_FAULT_BACKOFF_MAX_S", 30.0, minimum=0.1, maximum=600.0),
            fault_log_every_s=env_float("VISIONFLEET_FAULT_LOG_EVERY_S", 60.0, minimum=1.0),
            heartbeat_s=env_float("VISIONFLEET_HEARTBEAT_S", 5.0, minimum=0.1, maximum=300.0),
            metrics_port=int(served) if served.isdigit() else None,
            spot_notice_url=env_str("VISIONFLEET_SPOT_NOTICE_URL", "auto"),
            spot_poll_s=env_float("VISIONFLEET_SPOT_POLL_S", 5.0, minimum=0.1),
            parent_pid=int(parent) if parent.isdigit() else None,
            instance=env_str(INSTANCE_ENV),
        )


@dataclass(frozen=True)
class Settings:
    """One worker process's settings; each part goes to the component that needs it."""

    broker: BrokerSettings
    worker: WorkerSettings
    runtime: RuntimeSettings
    load: LoadSettings
    online: OnlineSettings
    serving: ExporterSettings  # metrics and probes, served by the process above the workers
    policy: Policy  # the autoscaling signal among the fleet's gauges
    access: Access  # what its jobs may touch (an embedded run's own job widens it: ``Access.for_job``)
    prices: list[Price]  # what each job's ``_REPORT.json`` prices it at
    model: str = DEFAULT_MODEL  # the worker's own (online requests, the bulk preload)
    role: str | None = None  # "online" or "bulk" under `visionfleet worker`; None under `celery -A`

    @classmethod
    def from_env(cls, broker: BrokerSettings) -> "Settings":
        """The rest, beside ``broker``, which the edge read already (for its app, its store)."""
        return cls(broker, WorkerSettings.from_env(), RuntimeSettings.from_env(), LoadSettings.from_env(),
                   OnlineSettings.from_env(), ExporterSettings.from_env(), Policy.from_env(), Access.from_env(),
                   prices_from_env(), env_str("VISIONFLEET_MODEL", DEFAULT_MODEL))


_current: Settings | None = None


def use(settings: Settings) -> None:
    """Hand this process's settings over, once, at its edge, before Celery starts the worker."""
    global _current
    _current = settings


def current() -> Settings | None:
    """This process's settings; None until its edge has handed them over."""
    return _current


def at_worker_start(app) -> Settings:
    """This process's settings as its Celery worker starts (``worker_init``): the ones its edge handed over,
    or, under ``celery -A`` (no command of ours before it), read now, with the broker settings ``app`` was
    built from. The first handler to ask reads them (``drain``'s, before ``process``'s); the others get the same."""
    if _current is None:
        use(Settings.from_env(app.broker_settings))
    return _current

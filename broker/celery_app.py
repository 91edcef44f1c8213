"""The Celery app: queues, routing and safe defaults, built from settings by ``make_app``.

Our commands build theirs from the settings they read. ``celery -A visionfleet.broker.celery_app
worker`` (an operator's own command, with no edge of ours before it) finds the module's ``app``:
built from the environment the first time it is asked for, never at import. An app connects to
nothing until a worker or producer actually sends or consumes.
"""
from celery import Celery
from kombu import Exchange, Queue

from visionfleet.broker.routes import celery_config, queue_name
from visionfleet.broker.settings import BrokerSettings


def make_app(settings: BrokerSettings) -> Celery:
    """The app for ``settings``; it keeps them as ``app.broker_settings``, where the worker it runs
    (``workers/process.py``) takes them from at its start."""
    settings.prepare()
    online, bulk = (queue_name(role, settings.namespace) for role in ("online", "bulk"))
    shared = celery_config(settings.namespace)  # what a plain Celery producer uses too: one source
    # drain before process: its hooks (the parent watch, the drain signal's handler) run before a model loads.
    app = Celery("visionfleet", include=[f"visionfleet.workers.{m}" for m in ("logs", "drain", "process", "tasks")])
    app.conf.update(
        broker_url=settings.broker_url or "filesystem://",
        result_backend=settings.result_backend,
        broker_transport_options=_transport_options(settings, shared.pop("broker_transport_options")),
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,  # a worker outlives a broker restart
        # JSON only (``shared``): a pickle message would let whoever reaches the broker run code.
        # Each queue its own exchange: a message for one never lands in the other.
        task_queues=tuple(Queue(q, Exchange(q, type="direct"), routing_key=q) for q in (online, bulk)),
        # A shard is acked only once it is committed: a dead worker's shard
        # is redelivered, never dropped. One at a time per process, so one
        # worker does not hoard shards that others could run.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
        # Task events for Flower (docker-compose runs it); the filesystem transport has no fanout for them.
        worker_send_task_events=not settings.embedded,
        task_send_sent_event=not settings.embedded,
        result_expires=settings.result_expires_s,
        **shared,
    )
    app.broker_settings = settings
    return app


def _transport_options(settings: BrokerSettings, namespaced: dict) -> dict:
    """``namespaced``: the namespace's key prefix (``celery_config``), a Redis option."""
    if settings.embedded:
        folder = str(settings.broker_dir)
        # The default 1 s polling adds up to a second per shard; 0.1 s costs
        # nothing measurable and keeps a small job snappy.
        # The exchange tables go under VISIONFLEET_HOME too: kombu's default
        # is ./control, which would litter whatever folder the user is in.
        return {"data_folder_in": folder, "data_folder_out": folder, "polling_interval": 0.1,
                "control_folder": str(settings.home / "control")}
    if settings.broker_url.startswith(("redis", "unix")):
        # A shard of a worker that died (SIGKILL, OOM, power loss) goes back
        # to the queue after this long unacked; a live worker's shard that
        # outlasts it is refused by the lease, not run twice.
        redeliver = settings.redeliver_after_s
        options = {"visibility_timeout": redeliver, "unacked_restore_interval": min(10, max(1, redeliver // 4)),
                   "unacked_restore_throttle": 1, "socket_timeout": 30, "socket_connect_timeout": 10,
                   "health_check_interval": 25}
        return {**options, **namespaced}
    return {}


def __getattr__(name: str) -> Celery:
    """``app``, for ``celery -A visionfleet.broker.celery_app``: Celery's ``find_app`` asks the module for it."""
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()["app"] = built = make_app(BrokerSettings.from_env())  # built once: Celery asks more than once
    return built

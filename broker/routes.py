"""Queue and task names: the message contract any Celery client can use by name.

Kept apart from the Celery app so that naming a queue (the client, the
tasks) never builds an app or touches a broker.

The namespace (``BrokerSettings.namespace``, ``VISIONFLEET_NAMESPACE``, default ``vf``)
is in every queue and Redis key name, so two fleets (staging, production) can share
one Redis or RabbitMQ without seeing each other's jobs, queues, workers or metrics.
The default namespace keeps the plain queue names ``bulk`` and ``online`` that
fleets already run on.
"""
from visionfleet.checkpoints.keys import DEFAULT_NAMESPACE

ROLES = ("online", "bulk")


def queue_name(role: str, namespace: str) -> str:
    """The queue a role (``bulk`` or ``online``) consumes in ``namespace``."""
    return role if namespace == DEFAULT_NAMESPACE else f"{namespace}.{role}"


RELABEL_SHARD_TASK = "visionfleet.relabel_shard"
CLASSIFY_TASK = "visionfleet.classify"
# An online request's message header: when the client sent it (epoch seconds), so the
# worker can time a request from enqueue to result. Optional for other clients.
SENT_AT_HEADER = "visionfleet_sent_at"


def broker_key_prefix(namespace: str) -> str:
    """What kombu's Redis transport puts before each of its keys in ``namespace`` (its ``global_keyprefix``):
    the queues' lists, unacked messages, bindings. The default namespace keeps kombu's plain keys."""
    return "" if namespace == DEFAULT_NAMESPACE else f"{namespace}:broker:"


def celery_config(namespace: str = DEFAULT_NAMESPACE) -> dict:
    """What a plain Celery producer needs to send to the fleet of ``namespace`` (``VISIONFLEET_NAMESPACE``):
    ``app.conf.update(visionfleet.celery_config("staging"))``, then ``app.send_task("visionfleet.classify",
    args=[uri])``. The fleet's own app is built with the same (``broker/celery_app.py``)."""
    prefix = broker_key_prefix(namespace)
    online, bulk = queue_name("online", namespace), queue_name("bulk", namespace)
    config = {
        "broker_transport_options": {"global_keyprefix": prefix} if prefix else {},
        "task_default_queue": bulk,
        "task_routes": {RELABEL_SHARD_TASK: {"queue": bulk}, CLASSIFY_TASK: {"queue": online}},
        "task_serializer": "json",
        "accept_content": ["json"],
        "result_serializer": "json",
    }
    if namespace != DEFAULT_NAMESPACE:
        # Another namespace's remote control (``drain --all``) and events never reach this fleet.
        config.update(control_exchange=f"{namespace}.celery", event_exchange=f"{namespace}.celeryev")
    return config

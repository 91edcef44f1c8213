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

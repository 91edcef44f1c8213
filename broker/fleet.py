"""What the fleet looks like now, read from the broker and the job-state store.

The inputs of the autoscaling signal (``broker/scaling.py``) and of the
fleet-wide gauges every worker exports: messages per queue, waiting and
claimed; images left in running jobs; the live worker processes, the
instance each belongs to and the speed each measured.
"""
from dataclasses import dataclass

import redis
from celery import Celery
from kombu.transport import virtual
from kombu.utils.json import loads

from visionfleet.broker.routes import ROLES, queue_name
from visionfleet.broker.scaling import Fleet, Process
from visionfleet.checkpoints.job_book import FINAL_STATES
from visionfleet.checkpoints.state import StateStore
from visionfleet.checkpoints.worker_registry import instance_of

JOBS_SCANNED = 1000  # the newest jobs looked at for images left: far more than run at once


@dataclass(frozen=True)
class QueueDepth:
    waiting: int  # in the queue, no worker has it
    claimed: int | None  # delivered to a worker, not yet acked; None where the broker does not say (AMQP)

    @property
    def backlog(self) -> int:
        return self.waiting + (self.claimed or 0)


def queue_depths(app: Celery, namespace: str) -> dict[str, QueueDepth]:
    """Each role's queue in ``namespace``, by role: messages waiting and, on a Redis broker, claimed but unfinished."""
    with app.connection_for_read() as conn:
        conn.ensure_connection(max_retries=1)
        channel = conn.default_channel
        claimed = _claimed_on_redis(channel)
        depths = {}
        for role in ROLES:
            queue = queue_name(role, namespace)
            depths[role] = QueueDepth(waiting(conn, queue), None if claimed is None else claimed.get(queue, 0))
        return depths


def waiting(conn, queue: str) -> int:
    """Messages waiting in ``queue``: every reader of a queue's depth (stats, scale, gauges, backpressure) asks here.

    On kombu's own transports (Redis, the embedded filesystem) the count is asked for directly: a queue
    nobody sent to counts 0. A passive declare would ask first whether the queue exists, and kombu's Redis
    transport answers that with EXISTS, one of the commands its ``global_keyprefix`` (our namespace) does
    not prefix: under a namespace every queue "did not exist" and read 0 while its list held the messages.
    """
    channel = conn.default_channel
    if isinstance(channel, virtual.Channel):
        return channel._size(queue)  # kombu's count (LLEN per priority on Redis), through its key prefix
    try:
        return channel.queue_declare(queue=queue, passive=True).message_count
    except conn.channel_errors:
        return 0  # AMQP: not declared yet, nothing sent


def _claimed_on_redis(channel) -> dict[str, int] | None:
    """Messages in kombu's ``unacked`` hash, by routing key (each queue's own); None on other brokers.

    Read with a plain client and the namespace's prefix spelled out: kombu's prefixing client leaves
    HVALS unprefixed, which read the default namespace's hash instead of this one's."""
    if not hasattr(channel, "unacked_key"):
        return None
    plain = redis.Redis(connection_pool=channel.client.connection_pool)
    counts: dict[str, int] = {}
    for raw in plain.hvals(channel.global_keyprefix + channel.unacked_key):
        routing_key = loads(raw)[2]
        counts[routing_key] = counts.get(routing_key, 0) + 1
    return counts


def images_left(store: StateStore) -> int:
    """Images not yet labelled in the jobs that have not ended."""
    return sum(max(p.total - p.done, 0) for p in store.jobs(JOBS_SCANNED) if p.state not in FINAL_STATES)


def processes(store: StateStore) -> tuple[Process, ...]:
    """The live worker processes; a worker is the ``visionfleet worker`` instance they belong to."""
    return tuple(
        Process(worker="|".join(instance_of(w)), alive_until=float(w["alive_until"]),
                images=int(w.get("images", 0)), busy_s=float(w.get("busy_s", 0.0)), on_shard=bool(w.get("job_id")))
        for w in store.workers())


def look(store: StateStore, app: Celery, namespace: str) -> tuple[Fleet, dict[str, QueueDepth]]:
    depths = queue_depths(app, namespace)
    fleet = Fleet(backlog_images=images_left(store), online_backlog=depths["online"].waiting,
                  processes=processes(store))
    return fleet, depths

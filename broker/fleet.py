"""What the fleet looks like now, read from the broker and the job-state store.

The inputs of the autoscaling signal (``broker/scaling.py``) and of the
fleet-wide gauges every worker exports: messages per queue, waiting and
claimed; images left in running jobs; the live worker processes and the
speed each measured.
"""
from dataclasses import dataclass

from celery import Celery
from kombu.utils.json import loads

from visionfleet.broker.routes import ROLES, queue_name
from visionfleet.broker.scaling import Fleet, Process
from visionfleet.checkpoints.job_book import FINAL_STATES
from visionfleet.checkpoints.state import StateStore

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
            try:
                waiting = channel.queue_declare(queue=queue, passive=True).message_count
            except conn.channel_errors:
                waiting = 0  # not declared yet: nothing sent
            depths[role] = QueueDepth(waiting, None if claimed is None else claimed.get(queue, 0))
        return depths


def _claimed_on_redis(channel) -> dict[str, int] | None:
    """Messages in kombu's ``unacked`` hash, by routing key (each queue's own); None on other brokers."""
    if not hasattr(channel, "unacked_key"):
        return None
    counts: dict[str, int] = {}
    for raw in channel.client.hvals(channel.unacked_key):
        routing_key = loads(raw)[2]
        counts[routing_key] = counts.get(routing_key, 0) + 1
    return counts


def images_left(store: StateStore) -> int:
    """Images not yet labelled in the jobs that have not ended."""
    return sum(max(p.total - p.done, 0) for p in store.jobs(JOBS_SCANNED) if p.state not in FINAL_STATES)


def processes(store: StateStore) -> tuple[Process, ...]:
    """The live worker processes; a worker is the machine (or container) they share."""
    return tuple(
        Process(worker=f"{w.get('host')}|{w.get('pidns')}", alive_until=float(w["alive_until"]),
                images=int(w.get("images", 0)), busy_s=float(w.get("busy_s", 0.0)), on_shard=bool(w.get("job_id")))
        for w in store.workers())


def look(store: StateStore, app: Celery, namespace: str) -> tuple[Fleet, dict[str, QueueDepth]]:
    depths = queue_depths(app, namespace)
    fleet = Fleet(backlog_images=images_left(store), online_backlog=depths["online"].waiting,
                  processes=processes(store))
    return fleet, depths

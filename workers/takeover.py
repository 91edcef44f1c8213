"""A dead worker's shard moves in seconds, not when the broker would give its message back.

A worker killed outright (its machine reclaimed without notice, every process
SIGKILLed) leaves its shard's message unacknowledged: the Redis broker gives it
back after ``VISIONFLEET_REDELIVER_AFTER_S`` (300 s), and the embedded
filesystem transport, which hands a message over by deleting its file, never
does. So every bulk worker process sweeps, once a beat, for shards still leased
to workers whose beats stopped (``LAPSE_AFTER_BEATS`` missed: 15 s at default
settings) and sends each shard's message again; an idle worker takes the shard
over at once, from its last commit.

Nothing runs twice: whoever takes a message must win the shard's lease first.
The dead worker's own message, when the broker gives it back, finds the shard
leased by the new holder (``BUSY``: looked at again until that holder is done)
or done, and is dropped; on RabbitMQ, which gives it back once the connection
is seen dropped, it may come first and take the shard over itself, and then
the sweep's message is the one dropped. A stale holder that wakes up has its
commits refused by the fencing token.
"""
import logging
import threading
import time
from collections.abc import Callable

from visionfleet.checkpoints.worker_registry import WorkerRegistry

log = logging.getLogger(__name__)

# A sweep that claims a dead worker's shard and dies before sending its message leaves it
# to the next sweep after this long (its claim's end).
CLAIM_GRACE_S = 60.0

Send = Callable[[str, int], None]


class Sweeper:
    """Offers dead holders' shards again, from a daemon thread, every ``every_s``.

    ``job_id``: only that job's shards (an embedded run's queue folder is its own job's alone).
    """

    def __init__(self, store: WorkerRegistry, send: Send, every_s: float, job_id: str | None = None) -> None:
        self.store, self.send, self.every_s, self.job_id = store, send, every_s, job_id
        self._thread = threading.Thread(target=self._run, daemon=True, name="takeover-sweep")

    def start(self) -> None:
        self._thread.start()

    def sweep(self) -> int:
        """One sweep: how many shards it offered again."""
        try:
            return self.store.reoffer_orphans(self._offer, grace_s=CLAIM_GRACE_S, job_id=self.job_id)
        except Exception:  # the store or the broker away: the claim stands, a later sweep sends it
            log.warning("sweep for dead workers' shards failed", exc_info=True)
            return 0

    def _offer(self, job_id: str, shard: int) -> None:
        self.send(job_id, shard)
        log.info("shard of a dead worker offered again", extra={"job_id": job_id, "shard": shard})

    def _run(self) -> None:
        # Its own thread, not the heartbeat's: a broker that does not answer must not stop the beats.
        while True:
            self.sweep()
            time.sleep(self.every_s)

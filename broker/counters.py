"""Counters that operators read with ``visionfleet stats``, kept in Redis."""
import redis

from visionfleet.checkpoints.keys import Keys
from visionfleet.checkpoints.hooks import Commit, Hook


class Counters:
    def __init__(self, client: redis.Redis | None, namespace: str) -> None:
        self._r = client  # None in embedded mode: nothing shared to report to
        self._keys = Keys(namespace)

    def count(self, name: str, by: int = 1) -> None:
        if self._r is not None:
            self._r.hincrby(self._keys.METRICS, name, by)

    def counts(self, **by: int) -> None:
        """Several counters in one round trip (a bulk commit's)."""
        if self._r is not None and by:
            pipe = self._r.pipeline(transaction=False)
            for name, value in by.items():
                pipe.hincrby(self._keys.METRICS, name, value)
            pipe.execute()

    def batch(self, size: int) -> None:
        if self._r is not None:
            pipe = self._r.pipeline(transaction=False)
            pipe.hincrby(self._keys.ONLINE_BATCH_SIZES, size, 1)
            pipe.hincrby(self._keys.METRICS, "online_batches", 1)
            pipe.execute()

    def snapshot(self) -> dict:
        if self._r is None:
            return {}
        return {
            "counters": {k: int(v) for k, v in self._r.hgetall(self._keys.METRICS).items()},
            "online_batch_sizes": {int(k): int(v) for k, v in self._r.hgetall(self._keys.ONLINE_BATCH_SIZES).items()},
        }


class CounterHook(Hook):
    """The bulk path's counters: images, commits, shards done, takeovers."""

    def __init__(self, counters: Counters) -> None:
        self._counters = counters

    def on_shard_start(self, job_id: str, shard: int, takeovers: int) -> None:
        if takeovers:
            self._counters.count("bulk_shard_takeovers")

    def on_commit(self, commit: Commit) -> None:
        self._counters.counts(bulk_images_ok=commit.ok, bulk_images_error=commit.errors, bulk_commits=1,
                             bulk_shards_done=int(commit.done))

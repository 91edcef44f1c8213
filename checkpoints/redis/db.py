"""One Redis client, its namespace's key names and the registered scripts, shared by the store's concerns.

Lease times come from the server's clock (``TIME``), so workers' clocks may
drift without breaking leases. Calls retry through a Redis restart
(bounded), so a worker rides it out.
"""
import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from visionfleet.checkpoints.keys import Keys
from visionfleet.checkpoints.redis.lua import SCRIPTS


class RedisDb:
    """The client every concern's mixin works through."""

    def __init__(self, url: str, *, namespace: str, retries: int = 12, job_ttl_s: float | None = None) -> None:
        self.job_ttl_s = job_ttl_s
        self._keys = Keys(namespace)
        # ~1 minute of backoff in all: long enough for a Redis restart.
        retry = Retry(ExponentialBackoff(cap=8, base=0.25), retries)
        self._r = redis.Redis.from_url(url, decode_responses=True, health_check_interval=30, retry=retry,
                                       retry_on_error=[redis.ConnectionError, redis.TimeoutError],
                                       socket_connect_timeout=5, socket_timeout=30)
        self._lua = {name: self._r.register_script(source) for name, source in SCRIPTS.items()}

    def _each_key(self, job_id: str, act) -> None:
        """``act(pipe, key)`` for every key of the job, in pipelined batches (a 50M job has 100k keys)."""
        k = self._keys
        shards = int(self._r.hget(k.job(job_id), "shards") or 0)
        names = [k.job(job_id), k.job_parts(job_id), k.job_failed(job_id), k.job_timeline(job_id),
                 k.job_seconds(job_id), k.job_machines(job_id), k.job_errors(job_id)]
        names += (name for i in range(shards) for name in (k.shard(job_id, i), k.shard_parts(job_id, i)))
        for start in range(0, len(names), 10_000):
            pipe = self._r.pipeline(transaction=False)
            for name in names[start:start + 10_000]:
                act(pipe, name)
            pipe.execute()


def server_time(r: redis.Redis) -> float:
    seconds, micros = r.time()
    return seconds + micros / 1e6

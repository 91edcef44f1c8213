"""Job and shard state, one interface per concern, each on SQLite and on Redis: layer 2 of 6 (imports ``pipeline``).

``job_book`` (jobs, state, progress, parts, purged jobs' tombstones),
``shard_leases`` (leases, fencing, checkpoints, commits), ``worker_registry`` (heartbeats, dead holders),
``run_ledger`` (what a run report needs); ``state.StateStore`` is all four,
as ``sqlite/`` and ``redis/`` build it; ``keys`` names the Redis keys of a
namespace. ``finalize`` and ``resume`` end and rebuild a job on top (``verdict``: what its
error records say about its end, the share rule and the early stop); ``hooks`` is what
watches a run (metrics, counters, the ledger, the report), told as it goes.
"""
from visionfleet.checkpoints.keys import DEFAULT_NAMESPACE
from visionfleet.checkpoints.job_book import Progress
from visionfleet.checkpoints.shard_leases import Checkpoint
from visionfleet.checkpoints.state import StateStore
from visionfleet.pipeline.errors import ConfigError

__all__ = ["Checkpoint", "Progress", "StateStore", "open_store"]


def open_store(url: str, *, job_ttl_s: float | None = None, namespace: str = DEFAULT_NAMESPACE) -> StateStore:
    """The store a URL names: ``redis://...`` or ``sqlite:///path``; ended jobs kept ``job_ttl_s`` (None: for good).

    On Redis, every key is in ``namespace`` (a SQLite file is one fleet's alone)."""
    if url.startswith("sqlite:///"):
        from visionfleet.checkpoints.sqlite.store import SqliteStore

        return SqliteStore(url.removeprefix("sqlite:///"), job_ttl_s=job_ttl_s)
    if url.startswith(("redis://", "rediss://", "unix://")):
        from visionfleet.checkpoints.redis.store import RedisStore

        return RedisStore(url, namespace=namespace, job_ttl_s=job_ttl_s)
    raise ConfigError(f"VISIONFLEET_STATE_URL scheme not supported ({url.split(':', 1)[0]}); use redis://host:6379/0")

"""Job and shard state: progress, leases, commits."""
from visionfleet.checkpoints.state import Checkpoint, Progress, StateStore
from visionfleet.pipeline.errors import ConfigError

__all__ = ["Checkpoint", "Progress", "StateStore", "open_store"]


def open_store(url: str, *, job_ttl_s: float | None = None) -> StateStore:
    """The store a URL names: ``redis://...`` or ``sqlite:///path``; ended jobs kept ``job_ttl_s`` (None: for good)."""
    if url.startswith("sqlite:///"):
        from visionfleet.checkpoints.sqlite_store import SqliteStore

        return SqliteStore(url.removeprefix("sqlite:///"), job_ttl_s=job_ttl_s)
    if url.startswith(("redis://", "rediss://", "unix://")):
        from visionfleet.checkpoints.redis_store import RedisStore

        return RedisStore(url, job_ttl_s=job_ttl_s)
    raise ConfigError(f"VISIONFLEET_STATE_URL scheme not supported ({url.split(':', 1)[0]}); use redis://host:6379/0")

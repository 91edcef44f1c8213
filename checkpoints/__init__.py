"""Job and shard state: progress, leases, commits."""
from visionfleet.checkpoints.state import Checkpoint, Progress, StateStore
from visionfleet.pipeline.errors import ConfigError

__all__ = ["Checkpoint", "Progress", "StateStore", "open_store"]


def open_store(url: str) -> StateStore:
    """The store a URL names: ``redis://...`` or ``sqlite:///path``."""
    if url.startswith("sqlite:///"):
        from visionfleet.checkpoints.sqlite_store import SqliteStore

        return SqliteStore(url.removeprefix("sqlite:///"))
    if url.startswith(("redis://", "rediss://", "unix://")):
        from visionfleet.checkpoints.redis_store import RedisStore

        return RedisStore(url)
    raise ConfigError(f"VISIONFLEET_STATE_URL scheme not supported ({url.split(':', 1)[0]}); use redis://host:6379/0")

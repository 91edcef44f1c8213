"""The Redis store: every concern's mixin over one client."""
from visionfleet.checkpoints.redis.jobs import RedisJobBook
from visionfleet.checkpoints.redis.leases import RedisLeases
from visionfleet.checkpoints.redis.ledger import RedisLedger
from visionfleet.checkpoints.redis.workers import RedisWorkers
from visionfleet.checkpoints.state import StateStore


class RedisStore(RedisJobBook, RedisLeases, RedisWorkers, RedisLedger, StateStore):
    """Built as ``RedisStore(url, namespace=..., job_ttl_s=...)`` (``redis.db.RedisDb``)."""

"""Every Redis key name the product uses, in one place."""
from visionfleet.broker.routes import NAMESPACE

PREFIX = NAMESPACE  # VISIONFLEET_NAMESPACE


def job(job_id: str) -> str:
    """Hash: meta, planned, total, shards, ok, errors, shards_done, state, timestamps."""
    return f"{PREFIX}:job:{job_id}"


def job_parts(job_id: str) -> str:
    """Set of committed output part names."""
    return f"{PREFIX}:job:{job_id}:parts"


def job_failed(job_id: str) -> str:
    """Hash: shard index -> failure reason."""
    return f"{PREFIX}:job:{job_id}:failed"


def job_timeline(job_id: str) -> str:
    """Hash: minute (epoch seconds at its start) -> images committed in it (the run report)."""
    return f"{PREFIX}:job:{job_id}:timeline"


def job_machines(job_id: str) -> str:
    """Hash: ``<host>|images``, ``<host>|busy_s``, ``<host>|first_at``, ``<host>|last_at`` (the run report)."""
    return f"{PREFIX}:job:{job_id}:machines"


def job_events(job_id: str) -> str:
    """Pub/sub channel (not a key): a message each time the job's stored state is set."""
    return f"{PREFIX}:job:{job_id}:events"


JOBS = f"{PREFIX}:jobs"
"""Sorted set: job id, scored by creation time (``visionfleet jobs``); entries of expired jobs are pruned."""


def shard(job_id: str, index: int) -> str:
    """Hash: offset, ok, errors, done, failed, owner, token, lease_until, takeovers."""
    return f"{PREFIX}:job:{job_id}:shard:{index}"


def shard_parts(job_id: str, index: int) -> str:
    """List of the shard's committed part names, in commit order."""
    return f"{PREFIX}:job:{job_id}:shard:{index}:parts"


WORKERS = f"{PREFIX}:workers"
"""Hash: worker owner -> JSON of its last heartbeat (``alive_until`` on the server's clock); lapsed ones are pruned,
those of dead holders once their shard is offered again."""

WORKERS_SWEEP = f"{PREFIX}:workers:sweep"
"""Sorted set: worker owner -> when a sweep for dead holders looks at it (its beats' end, or a sweeper's claim's)."""


def label_cache(key: str) -> str:
    """String (JSON labels, with a TTL): ``<model>:top<k>:sha256:<hex>`` or ``...:version:<bucket/key@etag>``."""
    return f"{PREFIX}:cache:{key}"


METRICS = f"{PREFIX}:metrics"
"""Hash of counters: online requests, rejections, batches, cache hits."""

ONLINE_BATCH_SIZES = f"{PREFIX}:metrics:online_batch_sizes"
"""Hash: batch size -> how many online batches had it."""

"""Every Redis key name the product uses, in one place, within one namespace.

The namespace (``VISIONFLEET_NAMESPACE``) is given by whoever builds the
store, the metrics or the cache, so two fleets (staging, production) can
share one Redis without seeing each other's jobs, workers or metrics.
"""

DEFAULT_NAMESPACE = "vf"


class Keys:
    """The key names of one namespace."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        # Sorted set: job id, scored by creation time (``visionfleet jobs``); entries of expired jobs are pruned.
        self.JOBS = f"{namespace}:jobs"
        # Hash: worker owner -> JSON of its last heartbeat (``alive_until`` on the server's clock); lapsed ones
        # are pruned, those of dead holders once their shard is offered again.
        self.WORKERS = f"{namespace}:workers"
        # Sorted set: worker owner -> when a sweep for dead holders looks at it (its beats' end, or a sweeper's
        # claim's).
        self.WORKERS_SWEEP = f"{namespace}:workers:sweep"
        # Hash of counters: online requests, rejections, batches, cache hits.
        self.METRICS = f"{namespace}:metrics"
        # Hash: batch size -> how many online batches had it.
        self.ONLINE_BATCH_SIZES = f"{namespace}:metrics:online_batch_sizes"

    def job(self, job_id: str) -> str:
        """Hash: meta, planned, total, shards, ok, errors, shards_done, state, timestamps."""
        return f"{self.namespace}:job:{job_id}"

    def job_purged(self, job_id: str) -> str:
        """String (when it was purged, with a TTL): the tombstone ``visionfleet purge`` leaves. Not one of the
        job's keys, which the purge deletes."""
        return f"{self.namespace}:purged:{job_id}"

    def job_parts(self, job_id: str) -> str:
        """Set of committed output part names."""
        return f"{self.job(job_id)}:parts"

    def job_failed(self, job_id: str) -> str:
        """Hash: shard index -> failure reason."""
        return f"{self.job(job_id)}:failed"

    def job_errors(self, job_id: str) -> str:
        """Hash: error kind -> error records of that kind committed, and ``<kind>|example`` -> the first one's reason."""
        return f"{self.job(job_id)}:errors"

    def job_timeline(self, job_id: str) -> str:
        """Hash: minute (epoch seconds at its start) -> images committed in it (the run report)."""
        return f"{self.job(job_id)}:timeline"

    def job_seconds(self, job_id: str) -> str:
        """Hash: second (epoch) -> images committed in it, for its first ``SECONDS_KEPT`` seconds (the run report)."""
        return f"{self.job(job_id)}:seconds"

    def job_machines(self, job_id: str) -> str:
        """Hash: ``<host>|images``, ``<host>|busy_s``, ``<host>|first_at``, ``<host>|last_at`` (the run report)."""
        return f"{self.job(job_id)}:machines"

    def job_events(self, job_id: str) -> str:
        """Pub/sub channel (not a key): a message each time the job's stored state is set."""
        return f"{self.job(job_id)}:events"

    def shard(self, job_id: str, index: int) -> str:
        """Hash: offset, ok, errors, done, failed, owner, token, lease_until, takeovers."""
        return f"{self.job(job_id)}:shard:{index}"

    def shard_parts(self, job_id: str, index: int) -> str:
        """List of the shard's committed part names, in commit order."""
        return f"{self.shard(job_id, index)}:parts"

    def label_cache(self, key: str) -> str:
        """String (JSON labels, with a TTL): ``<model>:top<k>:sha256:<hex>`` or ``...:version:<bucket/key@etag>``."""
        return f"{self.namespace}:cache:{key}"

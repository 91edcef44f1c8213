"""How a worker process runs shards; read once per process."""
from dataclasses import dataclass

from visionfleet.pipeline.envvars import env_float, env_int


@dataclass(frozen=True)
class WorkerSettings:
    commit_every: int = 1000
    commit_interval_s: float = 30.0
    lease_ttl_s: float = 120.0
    max_takeovers: int = 3
    drain_deadline_s: float = 20.0
    cache_ttl_s: int = 7 * 24 * 3600
    fault_backoff_max_s: float = 30.0  # the longest pause between tries while a fault lasts
    fault_log_every_s: float = 60.0  # how often a worker that waits says so in its log

    @classmethod
    def from_env(cls) -> "WorkerSettings":
        return cls(
            commit_every=env_int("VISIONFLEET_COMMIT_EVERY", 1000),
            commit_interval_s=env_float("VISIONFLEET_COMMIT_INTERVAL_S", 30.0, minimum=0.1),
            lease_ttl_s=env_float("VISIONFLEET_LEASE_TTL_S", 120.0, minimum=1.0),
            max_takeovers=env_int("VISIONFLEET_MAX_TAKEOVERS", 3, maximum=100),
            drain_deadline_s=env_float("VISIONFLEET_DRAIN_DEADLINE_S", 20.0, minimum=1.0),
            cache_ttl_s=env_int("VISIONFLEET_CACHE_TTL_S", 7 * 24 * 3600),
            fault_backoff_max_s=env_float("VISIONFLEET_FAULT_BACKOFF_MAX_S", 30.0, minimum=0.1, maximum=600.0),
            fault_log_every_s=env_float("VISIONFLEET_FAULT_LOG_EVERY_S", 60.0, minimum=1.0),
        )

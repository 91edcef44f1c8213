"""How many workers the fleet should have now: the autoscaling signal.

A pure decision over what the fleet looks like (``broker/fleet.py`` reads
it): size the fleet to finish the bulk backlog within a target time at the
rate the workers themselves measured, add workers while online requests
wait (their latency comes first), stay within the bounds, and never ask for
zero while a worker holds a shard or images wait. ``visionfleet scale
--json`` prints it; every worker exports it as ``visionfleet_desired_workers``.

A worker, here and in every count of workers, is one ``visionfleet worker``
instance (whatever processes it runs): the unit the deploy recipes scale,
one per pod or machine.

Celery's queue length is not the input: with late acks and prefetch, a
claimed shard leaves the list while it may run for an hour, so the list
reads empty while every worker is busy.
"""
import math
from dataclasses import asdict, dataclass, field

from visionfleet.pipeline.envvars import env_float, env_int
from visionfleet.pipeline.errors import ConfigError

# A process that has worked less than this has no rate worth scaling on yet.
MIN_BUSY_S = 10.0


@dataclass(frozen=True)
class Policy:
    target_finish_s: float = 3600.0
    min_workers: int = 0
    max_workers: int = 100
    online_backlog_per_worker: int = 64  # waiting online requests one more worker absorbs

    @classmethod
    def from_env(cls) -> "Policy":
        policy = cls(
            target_finish_s=env_float("VISIONFLEET_TARGET_FINISH_S", 3600.0, minimum=1.0),
            min_workers=env_int("VISIONFLEET_MIN_WORKERS", 0, minimum=0, maximum=100_000),
            max_workers=env_int("VISIONFLEET_MAX_WORKERS", 100, minimum=1, maximum=100_000),
            online_backlog_per_worker=env_int("VISIONFLEET_ONLINE_BACKLOG_PER_WORKER", 64, maximum=1_000_000),
        )
        if policy.min_workers > policy.max_workers:
            raise ConfigError(f"VISIONFLEET_MIN_WORKERS={policy.min_workers} is above VISIONFLEET_MAX_WORKERS="
                              f"{policy.max_workers}; set the minimum at or below the maximum")
        return policy


@dataclass(frozen=True)
class Process:
    """One worker process, as its last heartbeat says."""

    worker: str  # the `visionfleet worker` instance it belongs to: one scaling unit (a pod or machine each)
    alive_until: float  # its beats lapse then
    images: int = 0  # committed since it started
    busy_s: float = 0.0  # seconds spent on shards since it started
    on_shard: bool = False  # holds a shard's lease now


@dataclass(frozen=True)
class Fleet:
    backlog_images: int  # images not yet labelled in running jobs
    online_backlog: int  # online requests waiting
    processes: tuple[Process, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class Decision:
    desired_workers: int
    workers: int
    busy_workers: int
    backlog_images: int
    online_backlog: int
    images_per_worker_s: float | None
    reason: str

    def as_dict(self) -> dict:
        return asdict(self)


def decide(fleet: Fleet, policy: Policy, now: float) -> Decision:
    live = [p for p in fleet.processes if p.alive_until > now]
    workers = {p.worker for p in live}
    busy = {p.worker for p in live if p.on_shard}
    rate = per_worker_rate(live)
    bulk, why = _for_bulk(fleet.backlog_images, rate, len(workers), policy)
    online = 0
    if fleet.online_backlog:
        online = len(workers) + math.ceil(fleet.online_backlog / policy.online_backlog_per_worker)
    if online > bulk:
        bulk, why = online, f"{fleet.online_backlog} online requests waiting: online latency first"
    desired = min(max(bulk, policy.min_workers), policy.max_workers)
    if desired < bulk:
        why += f"; capped at VISIONFLEET_MAX_WORKERS={policy.max_workers}"
    elif desired > bulk:
        why += f"; raised to VISIONFLEET_MIN_WORKERS={policy.min_workers}"
    if desired == 0 and (busy or fleet.backlog_images):
        desired, why = 1, "a worker holds a shard or images wait: never zero"
    return Decision(desired_workers=desired, workers=len(workers), busy_workers=len(busy),
                    backlog_images=fleet.backlog_images, online_backlog=fleet.online_backlog,
                    images_per_worker_s=None if rate is None else round(rate, 2), reason=why)


def per_worker_rate(processes: list[Process]) -> float | None:
    """Images per second one worker labels: each measured process's own rate, summed per worker,
    averaged over workers; None until some process has worked long enough to tell."""
    by_worker: dict[str, float] = {}
    for p in processes:
        if p.busy_s >= MIN_BUSY_S:
            by_worker[p.worker] = by_worker.get(p.worker, 0.0) + p.images / p.busy_s
    rates = [r for r in by_worker.values() if r > 0]
    return sum(rates) / len(rates) if rates else None


def _for_bulk(backlog: int, rate: float | None, workers: int, policy: Policy) -> tuple[int, str]:
    if not backlog:
        return 0, "no bulk images waiting"
    if rate is None:
        # No worker has measured its speed yet: keep what runs (at least one) until one has.
        return max(workers, 1), "no worker rate measured yet: keeping the fleet until one is"
    need = math.ceil(backlog / (rate * policy.target_finish_s))
    return need, (f"{backlog} images at {rate:.1f} images/s per worker finish within "
                  f"VISIONFLEET_TARGET_FINISH_S={policy.target_finish_s:g} with {need}")

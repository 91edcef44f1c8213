"""The job book: each job's description, state and counters, and its committed parts.

A job is created with its immutable description, planned (``total`` URIs in
``shards`` shards), counted as its shards commit, and ended with a final
state; an ended job's state expires after ``job_ttl_s``. A job whose run
stopped before it ended (Ctrl-C of the embedded default) is marked
``interrupted`` until it is resumed: its state stays ``queued`` or
``running``, the states scripts know, and ``Progress.interrupted`` says why
nothing moves. A purged job leaves a tombstone for ``tombstone_ttl_s``, so
that asking about it says it was purged.
"""
import contextlib
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

FINAL_STATES = ("succeeded", "failed", "cancelled")
INTERRUPTED = "interrupted"  # a mark stored in place of a state, never a state itself


@dataclass
class Progress:
    job_id: str
    state: str
    planned: bool
    total: int
    shards: int
    shards_done: int
    ok: int
    errors: int
    created_at: float
    started_at: float | None
    updated_at: float | None
    failed_shards: dict[int, str] = field(default_factory=dict)
    reason: str | None = None
    seen_at: float | None = None  # a worker's last heartbeat while on this job
    interrupted: bool = False  # its run was stopped before it ended, and it has not been resumed since
    skipped: int = 0  # inputs an incremental run left out: labelled by its base, unchanged since

    @property
    def done(self) -> int:
        return self.ok + self.errors

    @property
    def complete(self) -> bool:
        """Planning finished and every shard ended, one way or the other."""
        return self.planned and self.shards_done + len(self.failed_shards) >= self.shards

    @property
    def rate(self) -> float | None:
        """Images per second since the first shard started."""
        if not self.started_at or not self.updated_at or self.updated_at <= self.started_at:
            return None
        return self.done / (self.updated_at - self.started_at)

    @property
    def eta_s(self) -> float | None:
        rate = self.rate
        if not rate or not self.planned or self.state in FINAL_STATES or self.interrupted:
            return None  # an interrupted job goes nowhere until it is resumed
        return max(self.total - self.done, 0) / rate

    def as_dict(self) -> dict:
        return {
            "job_id": self.job_id, "state": self.state, "total": self.total, "done": self.done,
            "ok": self.ok, "errors": self.errors, "planned": self.planned, "shards": self.shards,
            "shards_done": self.shards_done,
            "failed_shards": {str(k): v for k, v in self.failed_shards.items()},
            "images_per_s": round(self.rate, 2) if self.rate else None,
            "eta_s": round(self.eta_s) if self.eta_s is not None else None,
            "reason": self.reason, "created_at": self.created_at, "interrupted": self.interrupted,
            "skipped": self.skipped,
        }

    @property
    def label(self) -> str:
        """The state for people: ``interrupted`` in place of the queued or running of an interrupted job."""
        return INTERRUPTED if self.interrupted and self.state not in FINAL_STATES else self.state


@dataclass
class ErrorKind:
    """A job's error records of one kind (``pipeline.error_kinds``): how many, and the reason of the first
    one counted (an example that names the file)."""

    count: int
    example: str


def derive_state(stored: str | None, started: bool) -> str:
    if stored in FINAL_STATES:
        return stored
    return "running" if started else "queued"


class JobBook(ABC):
    """Jobs and their state. Every method is atomic on its own."""

    # Seconds an ended job's state is kept (VISIONFLEET_JOB_TTL_S); None: for good.
    # Its durable copy under DEST stays either way, and `resume` rebuilds from it.
    job_ttl_s: float | None = None
    # Seconds a purged job's tombstone is kept: long enough to explain a later `status`, bounded all the same.
    tombstone_ttl_s: float = 30 * 86400

    @abstractmethod
    def create_job(self, job_id: str, meta: dict) -> None:
        """Record a new job and its immutable description."""

    @abstractmethod
    def job_meta(self, job_id: str) -> dict | None:
        """The description given to ``create_job``, or None if unknown."""

    @abstractmethod
    def set_planned(self, job_id: str, total: int, shards: int, skipped: int = 0) -> None:
        """Planning is complete: the job has ``total`` URIs in ``shards`` shards (``skipped`` more were left
        out by an incremental run, counted in no total)."""

    @abstractmethod
    def set_state(self, job_id: str, state: str, reason: str | None = None) -> None:
        """Record a final state (``succeeded``, ``failed``, ``cancelled``); the job's state
        then expires after ``job_ttl_s``. Or mark a job that has not ended ``interrupted``: it
        stays queued or running, and is kept for good."""

    @abstractmethod
    def clear_state(self, job_id: str) -> None:
        """Forget the job's final state or interruption (``resume``): it is queued or running
        again, and kept for good."""

    @contextlib.contextmanager
    def state_changes(self, job_id: str) -> Iterator[Callable[[float], None]]:
        """A pause for whoever watches the job: ``pause(s)`` returns after ``s`` seconds, or as soon
        as the job's state is set, where the store can tell (a waiting command then ends the moment
        the job does). Here it can only sleep."""
        yield time.sleep

    @abstractmethod
    def jobs(self, limit: int) -> list[Progress]:
        """The ``limit`` most recently created jobs still kept, newest first."""

    @abstractmethod
    def purge(self, job_id: str) -> None:
        """Remove everything the store holds for the job, at once, leaving only a tombstone
        (until ``tombstone_ttl_s`` passes, or the job is created again)."""

    @abstractmethod
    def purged_at(self, job_id: str) -> float | None:
        """When ``purge`` removed the job, while its tombstone lasts; else None."""

    @abstractmethod
    def progress(self, job_id: str) -> Progress | None:
        """The job's counters and state, or None if unknown."""

    @abstractmethod
    def parts(self, job_id: str) -> list[str]:
        """Names of every committed output part, sorted."""

    @abstractmethod
    def error_kinds(self, job_id: str) -> dict[str, ErrorKind]:
        """The job's committed error records by kind (the commits count them); empty if none or unknown."""

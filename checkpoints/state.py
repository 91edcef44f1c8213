"""Job and shard state: what every store implements, and the data it holds.

A shard moves through: leased by one worker (owner + fencing token) ->
committed in steps (each step: output part first, then this checkpoint) ->
done, or failed with a reason. A commit carrying a stale token is refused,
so a worker that lost its lease can never move the checkpoint.
"""
import contextlib
import secrets
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field

FINAL_STATES = ("succeeded", "failed", "cancelled")
LEDGER_EVENTS = ("drains", "spot_notices")


@dataclass
class Lease:
    """A shard's lease: ``token`` fences this holder's commits."""

    token: str
    # How often the shard was taken over from a holder whose lease had
    # expired (it died or stalled), since the shard last made progress.
    takeovers: int = 0


@dataclass
class Checkpoint:
    """How far a shard has got: its first ``offset`` URIs are committed, in ``parts``."""

    offset: int = 0
    ok: int = 0
    errors: int = 0
    parts: list[str] = field(default_factory=list)
    done: bool = False
    failed: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Checkpoint":
        return cls(**{k: data[k] for k in ("offset", "ok", "errors", "parts", "done", "failed")})


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
        if not rate or not self.planned or self.state in FINAL_STATES:
            return None
        return max(self.total - self.done, 0) / rate

    def as_dict(self) -> dict:
        return {
            "job_id": self.job_id, "state": self.state, "total": self.total, "done": self.done,
            "ok": self.ok, "errors": self.errors, "planned": self.planned, "shards": self.shards,
            "shards_done": self.shards_done,
            "failed_shards": {str(k): v for k, v in self.failed_shards.items()},
            "images_per_s": round(self.rate, 2) if self.rate else None,
            "eta_s": round(self.eta_s) if self.eta_s is not None else None,
            "reason": self.reason, "created_at": self.created_at,
        }


def new_token() -> str:
    """A fencing token: unique without a counter, so it stays unique even
    after the store is wiped and rebuilt from the durable copies."""
    return secrets.token_hex(6)


def derive_state(stored: str | None, started: bool) -> str:
    if stored in FINAL_STATES:
        return stored
    return "running" if started else "queued"


class StateStore(ABC):
    """Durable-enough, shared job state. Every method is atomic on its own."""

    @abstractmethod
    def create_job(self, job_id: str, meta: dict) -> None:
        """Record a new job and its immutable description."""

    @abstractmethod
    def job_meta(self, job_id: str) -> dict | None:
        """The description given to ``create_job``, or None if unknown."""

    @abstractmethod
    def set_planned(self, job_id: str, total: int, shards: int) -> None:
        """Planning is complete: the job has ``total`` URIs in ``shards`` shards."""

    @abstractmethod
    def acquire(self, job_id: str, shard: int, owner: str, ttl_s: float) -> Lease | None:
        """Lease the shard to ``owner`` with a new token, or None while another owner's lease runs."""

    @abstractmethod
    def checkpoint(self, job_id: str, shard: int) -> Checkpoint:
        """The shard's last committed state."""

    @abstractmethod
    def commit(self, job_id: str, shard: int, token: str, *, offset: int, ok: int, errors: int,
               part: str | None, done: bool, ttl_s: float, worker: str = "", busy_s: float = 0.0) -> bool:
        """Move the checkpoint to ``offset`` and add the counts, if ``token`` still holds the lease.

        Renews the lease (a commit of nothing, at the same offset with no part, only renews it);
        progress resets the takeover count. Returns False, changing nothing, for a stale token or a
        shard already done. A commit whose part is listed already went through (its reply was lost):
        it returns True and counts nothing again, so a commit may be retried. With a
        ``worker`` (its machine), the job's ledger gains the images in this
        minute, and the machine's images and ``busy_s`` (seconds of work they took).
        """

    @abstractmethod
    def fail_shard(self, job_id: str, shard: int, token: str, reason: str) -> bool:
        """End the shard as failed with ``reason``, if ``token`` still holds the lease and it is not done."""

    @abstractmethod
    def reopen(self, job_id: str, shards: list[int]) -> list[int]:
        """Clear the failure of each failed shard among ``shards`` (its committed range stays, its
        takeovers start again from 0) and the job's ``failed`` state; the shards that had failed."""

    @abstractmethod
    def release(self, job_id: str, shard: int, token: str) -> None:
        """Give the lease up early (the shard goes back to the queue)."""

    @abstractmethod
    def restore_shard(self, job_id: str, shard: int, checkpoint: Checkpoint) -> None:
        """Seed a shard of a job being rebuilt from its durable copy (after the store was lost)."""

    # Seconds an ended job's state is kept (VISIONFLEET_JOB_TTL_S); None: for good.
    # Its durable copy under DEST stays either way, and `resume` rebuilds from it.
    job_ttl_s: float | None = None

    @contextlib.contextmanager
    def state_changes(self, job_id: str) -> Iterator[Callable[[float], None]]:
        """A pause for whoever watches the job: ``pause(s)`` returns after ``s`` seconds, or as soon
        as the job's state is set, where the store can tell (a waiting command then ends the moment
        the job does). Here it can only sleep."""
        yield time.sleep

    @abstractmethod
    def set_state(self, job_id: str, state: str, reason: str | None = None) -> None:
        """Record a final state (``succeeded``, ``failed``, ``cancelled``); the job's state
        then expires after ``job_ttl_s``."""

    @abstractmethod
    def jobs(self, limit: int) -> list[Progress]:
        """The ``limit`` most recently created jobs still kept, newest first."""

    @abstractmethod
    def purge(self, job_id: str) -> None:
        """Remove everything the store holds for the job, at once."""

    @abstractmethod
    def progress(self, job_id: str) -> Progress | None:
        """The job's counters and state, or None if unknown."""

    @abstractmethod
    def parts(self, job_id: str) -> list[str]:
        """Names of every committed output part, sorted."""

    @abstractmethod
    def beat(self, owner: str, info: dict, ttl_s: float) -> None:
        """``owner`` is alive for ``ttl_s`` more seconds, doing ``info``.

        ``info`` may name ``job_id``, ``shard`` and ``token``: the job records when a
        worker was last seen on it, and the shard's lease, if that token still
        holds it, counts as alive only while these beats go on, so a dead
        holder's lease is taken over once its beats stop, not at the lease's end.
        """

    @abstractmethod
    def note(self, job_id: str, event: str) -> None:
        """Count one ``drains`` or ``spot_notices`` event of a job (a shard handed back), if the job exists."""

    @abstractmethod
    def ledger(self, job_id: str) -> dict:
        """What the run report needs: ``timeline`` {minute: images}, ``workers`` {machine: {images, busy_s,
        first_at, last_at}}, and the counts ``redone`` (images a dead holder had labelled, as its last beat
        said, when its shard was taken over), ``takeovers``, ``drains`` and ``spot_notices``."""

    @abstractmethod
    def workers(self) -> list[dict]:
        """The info of every worker whose beats have not lapsed, with ``owner`` and ``seen_at``."""

    @abstractmethod
    def forget(self, owner: str) -> None:
        """``owner`` is gone (it exited, or it is known dead): drop it, and let its lease be taken at once.

        A shard it still holds keeps its record, lapsed, for ``reoffer_orphans``."""

    def reoffer_orphans(self, offer: Callable[[str, int], None], *, grace_s: float,
                        job_id: str | None = None, limit: int = 100) -> int:
        """Offer again each shard still leased to a worker whose beats stopped: ``offer(job_id, shard)``
        sends its message. Returns how many were offered.

        Each is claimed for ``grace_s`` before it is offered, so callers running at once offer it once,
        and one that dies between claim and offer leaves it to the next after ``grace_s``. Records of
        dead workers that hold nothing (any more) are dropped on the way. ``job_id``: only that job's
        shards (an embedded run's queue is its own job's alone).
        """
        offered = 0
        for owner, info in self._lapsed(limit):
            if job_id is not None and info.get("job_id") not in (None, job_id):
                continue
            if self._claim_orphan(owner, info, grace_s):
                offer(info["job_id"], info["shard"])
                self._settle_orphan(owner)
                offered += 1
        return offered

    @abstractmethod
    def _lapsed(self, limit: int) -> list[tuple[str, dict]]:
        """Up to ``limit`` (owner, last beat) of workers whose beats stopped and whose claim, if any, ran out."""

    @abstractmethod
    def _claim_orphan(self, owner: str, info: dict, grace_s: float) -> bool:
        """True, and ``owner`` claimed for ``grace_s``, if it is still lapsed and its shard is still leased to it;
        else False, and its record dropped if it lapsed holding nothing."""

    @abstractmethod
    def _settle_orphan(self, owner: str) -> None:
        """``owner``'s shard was offered again: drop its record, unless it beat again meanwhile."""

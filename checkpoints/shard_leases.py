"""Shard leases and fencing: who may work on a shard, and how far it has got.

A shard moves through: leased by one worker (owner + fencing token) ->
committed in steps (each step: output part first, then this checkpoint) ->
done, or failed with a reason. A commit carrying a stale token is refused,
so a worker that lost its lease can never move the checkpoint.
"""
import secrets
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field

from visionfleet.checkpoints.job_book import ErrorKind
from visionfleet.checkpoints.run_ledger import Usage


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


def new_token() -> str:
    """A fencing token: unique without a counter, so it stays unique even
    after the store is wiped and rebuilt from the durable copies."""
    return secrets.token_hex(6)


class ShardLeases(ABC):
    """Leases, checkpoints and fenced commits of a job's shards. Every method is atomic on its own."""

    @abstractmethod
    def acquire(self, job_id: str, shard: int, owner: str, ttl_s: float) -> Lease | None:
        """Lease the shard to ``owner`` with a new token, or None while another owner's lease runs.

        Taking it over from a dead holder counts a takeover, and the images that holder had labelled
        (its last beat) as redone, in the run ledger."""

    @abstractmethod
    def checkpoint(self, job_id: str, shard: int) -> Checkpoint:
        """The shard's last committed state."""

    @abstractmethod
    def commit(self, job_id: str, shard: int, token: str, *, offset: int, ok: int, errors: int,
               part: str | None, done: bool, ttl_s: float, usage: Usage | None = None,
               kinds: dict[str, ErrorKind] | None = None, whole: bool = False) -> bool:
        """Move the checkpoint to ``offset`` and add the counts, if ``token`` still holds the lease.

        Renews the lease (a commit of nothing, at the same offset with no part, only renews it);
        progress resets the takeover count. Returns False, changing nothing, for a stale token, a
        shard already done, or a job whose state is ``failed`` (it stopped: what it has committed is
        what its summary lists, until ``reopen``). A commit whose part is listed already went through
        (its reply was lost): it returns True and counts nothing again, so a commit may be retried.
        With a ``usage``, the job's run ledger gains the images in this minute, and the machine's
        images and busy seconds; with ``kinds`` (this commit's errors by kind, each with its first
        reason), the job's counts by kind gain them, keeping the first example of each kind: all in
        the same transaction. With ``whole``, ``part`` holds every record of the shard so far (its earlier
        parts compacted, and this commit's records): it replaces them in the shard's and the job's parts, in
        the same transaction too, so the records are listed once before it and once after.
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

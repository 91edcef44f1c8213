"""The worker registry: heartbeats, who is alive, and dead holders whose shards are offered again.

A beat that names a shard keeps that shard's lease alive: a dead holder's
lease is taken over once its beats stop, not at the lease's end. Those
updates are made with the beat, in one step.
"""
from abc import ABC, abstractmethod
from collections.abc import Callable


def instance_of(info: dict) -> tuple[str, str, str]:
    """The ``visionfleet worker`` instance a beating process belongs to: the one unit every count of workers
    counts (``scale``, ``stats``, ``/metrics``, ``status``). Its name (``-n``, or ``PID@host``) with its host
    and pid namespace, as two containers may share both a host name and a pid. A beat without one (a worker
    of an earlier release) is its own instance."""
    return (str(info.get("instance") or info.get("owner")), str(info.get("host")), str(info.get("pidns")))


def names_a_shard(info: dict) -> bool:
    """The beat names a shard (whether it is still leased to that worker, the shard's record says)."""
    return bool(info.get("job_id")) and info.get("shard") is not None


class WorkerRegistry(ABC):
    @abstractmethod
    def beat(self, owner: str, info: dict, ttl_s: float) -> None:
        """``owner`` is alive for ``ttl_s`` more seconds, doing ``info``.

        ``info`` may name ``job_id``, ``shard`` and ``token``: the job records when a
        worker was last seen on it, and the shard's lease, if that token still
        holds it, counts as alive only while these beats go on, so a dead
        holder's lease is taken over once its beats stop, not at the lease's end.
        """

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

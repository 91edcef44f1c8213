"""The run ledger: what a job's run report needs (images per second, per minute and per machine, takeovers, drains).

Most of it is written by other steps in their own transaction: a commit
adds its ``Usage``, a takeover its count and redone images; only the
events a worker notes on its own come through ``note``.
"""
from abc import ABC, abstractmethod
from dataclasses import dataclass

LEDGER_EVENTS = ("drains", "spot_notices")
# Second buckets kept per job: an hour of labelling. The report draws seconds only for a job short enough
# to want buckets under a minute (up to an hour: 30 s buckets, 120 points), so a longer job needs them
# no more; its minute buckets, kept always, stay one field a minute however long it runs. Without this
# bound a multi-day 50M-image job would hold a field per second (100k+) for a chart that cannot use them.
SECONDS_KEPT = 3600


@dataclass(frozen=True)
class Usage:
    """The ledger's part of a commit: the ``machine`` that labelled its images, in ``busy_s`` seconds of work.

    Written in the commit's own transaction, so the ledger never counts a commit that was refused."""

    machine: str
    busy_s: float


class RunLedger(ABC):
    @abstractmethod
    def note(self, job_id: str, event: str) -> None:
        """Count one ``drains`` or ``spot_notices`` event of a job (a shard handed back), if the job exists."""

    @abstractmethod
    def ledger(self, job_id: str) -> dict:
        """What the run report needs: ``timeline`` {minute: images committed in it} and ``seconds`` {second:
        images labelled in it, each commit's spread evenly over the busy seconds it took} (epoch seconds at
        the bucket's start; at most ``SECONDS_KEPT`` seconds, and none in a ledger from before they were
        kept), ``workers`` {machine: {images, busy_s,
        first_at, last_at}}, and the counts ``redone`` (images a dead holder had labelled, as its last beat
        said, when its shard was taken over), ``takeovers``, ``drains`` and ``spot_notices``."""

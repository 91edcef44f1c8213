"""Run one shard: lease it, resume from its checkpoint, label, commit in steps.

A commit is: write the output part for the range just done, then move the
checkpoint (fenced by the lease token). If the checkpoint move is refused,
another worker owns the shard now: this one deletes its orphan part and
stops. Free of Celery: the task module only maps outcomes to acks/retries.
"""
import enum
import logging
import time
from collections.abc import Callable

from checkpoints.finalize import finalize_if_complete
from checkpoints.state import StateStore
from pipeline import layout
from pipeline.errors import RetryableError
from pipeline.labeller import Labeller
from pipeline.records import to_jsonl
from pipeline.storage import storage_for
from workers.settings import WorkerSettings

log = logging.getLogger(__name__)


class Outcome(enum.Enum):
    DONE = "done"            # shard complete (now or before)
    BUSY = "busy"            # another live worker holds the lease: try again later
    LOST_LEASE = "lost"      # our commit was refused: someone else took over
    FAILED = "failed"        # ended with an error that retrying will not fix
    UNKNOWN_JOB = "unknown"  # no such job in the state store


class ShardRun:
    def __init__(self, store: StateStore, labeller: Labeller, settings: WorkerSettings, owner: str,
                 *, clock: Callable[[], float] = time.monotonic) -> None:
        self.store, self.labeller, self.settings, self.owner = store, labeller, settings, owner
        self._clock = clock

    def run(self, job_id: str, shard: int) -> Outcome:
        meta = self.store.job_meta(job_id)
        if meta is None:
            return Outcome.UNKNOWN_JOB
        token = self.store.acquire(job_id, shard, self.owner, self.settings.lease_ttl_s)
        if token is None:
            return Outcome.BUSY
        start = self.store.checkpoint(job_id, shard)
        if start.done or start.failed:
            return Outcome.DONE
        root = meta["output"]
        uris = storage_for(root).read(layout.shard_list(root, shard)).decode("utf-8").splitlines()
        try:
            outcome = self._label(job_id, shard, token, meta, uris, start.offset)
        except RetryableError:
            self.store.release(job_id, shard, token)  # let whoever retries start at once
            raise
        except Exception as exc:  # a bug or a permanent output failure: end this shard, not the fleet
            log.exception("shard failed", extra={"job_id": job_id, "shard": shard})
            self.store.fail_shard(job_id, shard, token, f"{type(exc).__name__}: {exc}")
            outcome = Outcome.FAILED
        if outcome in (Outcome.DONE, Outcome.FAILED):
            finalize_if_complete(self.store, job_id)
        return outcome

    def give_up(self, job_id: str, shard: int, reason: str) -> None:
        """Mark the shard failed after its retries are spent."""
        token = self.store.acquire(job_id, shard, self.owner, self.settings.lease_ttl_s)
        if token is not None and self.store.fail_shard(job_id, shard, token, reason):
            finalize_if_complete(self.store, job_id)

    def _label(self, job_id, shard, token, meta, uris, offset) -> Outcome:
        records, since = [], self._clock()
        for record in self.labeller.label(uris[offset:], meta["top_k"]):
            records.append(record)
            end = offset + len(records)
            due = len(records) >= self.settings.commit_every or self._clock() - since >= self.settings.commit_interval_s
            if due or end == len(uris):
                if not self._commit(job_id, shard, token, meta["output"], offset, records, end == len(uris)):
                    return Outcome.LOST_LEASE
                offset, records, since = end, [], self._clock()
        if offset != len(uris):  # the labeller owes one record per input
            raise RuntimeError(f"shard {shard}: {offset} records for {len(uris)} inputs")
        return Outcome.DONE

    def _commit(self, job_id, shard, token, root, start, records, done) -> bool:
        end = start + len(records)
        part = layout.part_name(shard, start, end, token) if records else None
        storage = storage_for(root)
        if part:
            storage.write(layout.child(root, part), to_jsonl(records))
        errors = sum(r["status"] == "error" for r in records)
        if self.store.commit(job_id, shard, token, offset=end, ok=len(records) - errors, errors=errors,
                             part=part, done=done, ttl_s=self.settings.lease_ttl_s):
            log.info("commit", extra={"job_id": job_id, "shard": shard, "start": start, "end": end, "done": done})
            return True
        log.warning("commit refused: lease lost", extra={"job_id": job_id, "shard": shard, "token": token})
        if part:
            storage.delete(layout.child(root, part))
        return False

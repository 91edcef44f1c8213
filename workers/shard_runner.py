"""Run one shard: lease it, resume from its checkpoint, label, commit in steps.

A commit is: write the output part for the range just done, move the
checkpoint (fenced by the lease token), then write the checkpoint's durable
copy under the job's output. If the checkpoint move is refused, another
worker owns the shard now: this one deletes its orphan part and stops.
On drain it commits what it has, hands the lease back and stops. After each
commit it looks at the job: cancelled or failed meanwhile, it stops there; a
job whose first records are all errors of one kind it stops early itself
(``checkpoints.finalize.stop_early_if_due``), and the store then refuses the
job's commits, so every other worker on it stops at its next one.
An infrastructure fault (``pipeline.faults``) never fails the shard: a
commit's step waits it out in place, renewing the lease meanwhile; a fault
anywhere else hands the lease back and leaves the waiting to the task.
Free of Celery: the task module maps outcomes to acks and messages.
"""
import contextlib
import enum
import logging
import time
from collections.abc import Callable

from visionfleet.checkpoints.finalize import finalize_if_complete, stop_early_if_due
from visionfleet.checkpoints.hooks import NO_HOOKS, Commit, Hooks
from visionfleet.checkpoints.job_book import ErrorKind, Progress
from visionfleet.checkpoints.shard_leases import Checkpoint, Lease
from visionfleet.checkpoints.state import StateStore
from visionfleet.pipeline import shard_lists
from visionfleet.pipeline.error_kinds import kind_of
from visionfleet.pipeline.faults import infrastructure
from visionfleet.pipeline.job import Job
from visionfleet.pipeline.labeller import Check, LabelCache, Labeller
from visionfleet.workers.fault_wait import FaultWait, Interrupted
from visionfleet.workers.heartbeat import Activity
from visionfleet.workers.settings import WorkerSettings

log = logging.getLogger(__name__)


class Outcome(enum.Enum):
    DONE = "done"              # shard complete (now or before)
    BUSY = "busy"              # another live worker holds the lease: try again later
    HANDED_BACK = "handed_back"  # drained: progress committed, lease released, send it again
    LOST_LEASE = "lost"        # our commit was refused: someone else took over
    FAILED = "failed"          # ended with an error that retrying will not fix
    CANCELLED = "cancelled"    # the job was cancelled: stop, the message is done
    STOPPED = "stopped"        # the job failed meanwhile (e.g. stopped early): stop, the message is done
    UNKNOWN_JOB = "unknown"    # no such job in the state store


class _LeaseLost(Exception):
    """Renewing the lease during a wait was refused: another worker holds the shard now."""


class _Shard:
    """One leased run over one shard: its URIs and their fingerprints, where it writes, what is committed."""

    def __init__(self, job_id: str, index: int, lease: Lease, job: Job, entries: list[tuple[str, str | None]],
                 committed: Checkpoint, embedding_dim: int | None = None):
        self.job_id, self.index, self.lease, self.job = job_id, index, lease, job
        self.uris = [uri for uri, _ in entries]
        self.fingerprints = [fingerprint for _, fingerprint in entries]
        self.root = job.root
        self.sink = job.sink(embedding_dim)
        self.committed = committed


class ShardRun:
    def __init__(self, store: StateStore, labeller: Labeller, settings: WorkerSettings, owner: str,
                 *, should_stop: Callable[[], bool] = lambda: False, cache: LabelCache | None = None,
                 clock: Callable[[], float] = time.monotonic, activity: Activity | None = None,
                 check: Check | None = None, hooks: Hooks = NO_HOOKS, faults: FaultWait | None = None) -> None:
        self.store, self.labeller, self.settings, self.owner = store, labeller, settings, owner
        self.activity = activity or Activity()  # what the heartbeat reports
        self.faults = faults or FaultWait(self.activity, settings, should_stop=should_stop)
        self._should_stop = should_stop
        self._cache = cache
        self._clock = clock
        self._check = check  # the inputs this worker may read
        self._hooks = hooks  # what watches the run: metrics, counters, the ledger, the report

    def run(self, job: Job, index: int) -> Outcome:
        """Shard ``index`` of ``job``, which the task read once from the store."""
        job_id = job.job_id
        if (ended := _ended(self.store.progress(job_id))) is not None:
            return ended
        lease = self.store.acquire(job_id, index, self.owner, self.settings.lease_ttl_s)
        if lease is None:
            return Outcome.BUSY
        committed = self.store.checkpoint(job_id, index)
        if committed.done or committed.failed:
            self.store.release(job_id, index, lease.token)
            finalize_if_complete(self.store, job_id, self._hooks)  # the last shard's own try may have met a fault
            return Outcome.DONE
        shard = _Shard(job_id, index, lease, job, shard_lists.read_entries(job, index), committed,
                       self.labeller.model.info.embedding_dim)
        self._hooks.on_shard_start(job_id, index, lease.takeovers)
        if lease.takeovers >= self.settings.max_takeovers:
            return self._fail(shard, self._poison_reason(shard))
        self.activity.start(job_id, index, lease.token)
        try:
            outcome = self._label(shard)
        except Exception as exc:
            if isinstance(exc, Interrupted) or infrastructure(exc) is not None:
                self._release_if_possible(shard)  # whoever tries next may start at once
                raise
            # A bug or a permanent output failure: end this shard, not the fleet.
            log.exception("shard failed", extra={"job_id": job_id, "shard": index})
            return self._fail(shard, f"{type(exc).__name__}: {exc}")
        finally:
            self.activity.stop()
        if outcome is Outcome.DONE:
            finalize_if_complete(self.store, job_id, self._hooks)
        return outcome

    def _release_if_possible(self, shard: _Shard) -> None:
        try:
            self.store.release(shard.job_id, shard.index, shard.lease.token)
        except Exception as exc:  # the store may be the fault: the lease then runs out by itself
            if infrastructure(exc) is None:
                raise

    def _label(self, shard: _Shard) -> Outcome:
        start = shard.committed.offset
        if self._should_stop():
            self.store.release(shard.job_id, shard.index, shard.lease.token)
            return Outcome.HANDED_BACK
        records, since = [], self._clock()
        cache = self._cache if shard.job.spec.cache else None
        # The first commit comes after one model batch, so labels and progress show at once;
        # later ones on the cadence.
        every = min(self.settings.commit_every, self.labeller.model.info.max_batch_size)
        for record in self.labeller.label(shard.uris[start:], shard.job.spec.top_k, cache, self._check,
                                          embeddings=shard.job.spec.embeddings):
            # What the input was when listed: an incremental run skips it while its listing says the same.
            record["fingerprint"] = shard.fingerprints[start + len(records)]
            records.append(record)
            self.activity.labelled = len(records)
            end = start + len(records)
            stop = self._should_stop()
            due = len(records) >= every or self._clock() - since >= self.settings.commit_interval_s
            if stop or due or end == len(shard.uris):
                if not self._commit(shard, records, done=end == len(shard.uris), busy_s=self._clock() - since):
                    return self._refused(shard)
                self.activity.committed(len(records))
                start, records, since, every = end, [], self._clock(), self.settings.commit_every
                ended = self._job_ended(shard)
                if ended is not None and end < len(shard.uris):
                    self.store.release(shard.job_id, shard.index, shard.lease.token)
                    return ended
            if stop and end < len(shard.uris):
                self.store.release(shard.job_id, shard.index, shard.lease.token)
                log.info("shard handed back", extra={"job_id": shard.job_id, "shard": shard.index, "offset": end})
                return Outcome.HANDED_BACK
        if start != len(shard.uris):  # the labeller owes one record per input
            raise RuntimeError(f"shard {shard.index}: {start} records for {len(shard.uris)} inputs")
        return Outcome.DONE

    def _job_ended(self, shard: _Shard) -> Outcome | None:
        """After a commit: whether the job has ended meanwhile (cancelled, or failed), or ends now, stopped
        early by what its first records say (``finalize.stop_early_if_due``); None while it goes on."""
        progress = self.store.progress(shard.job_id)
        if progress is None:  # purged meanwhile: the next commit is refused
            return None
        ended = _ended(progress)
        if ended is None and stop_early_if_due(self.store, shard.job, progress, self._hooks):
            ended = Outcome.STOPPED
        return ended

    def _refused(self, shard: _Shard) -> Outcome:
        """A refused commit: the lease is lost, or the job failed meanwhile (the store then takes none)."""
        if _ended(self.store.progress(shard.job_id)) is not Outcome.STOPPED:
            return Outcome.LOST_LEASE
        self._release_if_possible(shard)
        log.info("job failed meanwhile: shard stopped", extra={"job_id": shard.job_id, "shard": shard.index})
        return Outcome.STOPPED

    def _commit(self, shard: _Shard, records: list[dict], *, done: bool, busy_s: float = 0.0) -> bool:
        start = shard.committed.offset
        end = start + len(records)
        part = None
        # A format read as a table leaves one part per shard: its last commit rewrites the shard's parts as one.
        earlier = shard.committed.parts if done and records and shard.sink.compacts else []
        if records:
            try:
                part = self._ride_out(shard, lambda: self._write_part(shard, start, end, records, earlier),
                                      between=lambda: self._renew(shard))
            except _LeaseLost:
                log.warning("lease lost while waiting out a fault", extra={"job_id": shard.job_id,
                                                                           "shard": shard.index})
                return False
        errors = sum(r["status"] == "error" for r in records)
        commit = Commit(shard.job_id, shard.index, ok=len(records) - errors, errors=errors, done=done, busy_s=busy_s)
        kinds = _error_kinds(records)
        committed = self._ride_out(shard, lambda: self._commit_step(shard, end, commit, part, kinds, bool(earlier)))
        if not committed:
            log.warning("commit refused: lease lost, or the job failed", extra={"job_id": shard.job_id,
                                                                                "shard": shard.index})
            if part:
                shard.sink.delete_part(part)
            return False
        self._hooks.on_commit(commit)
        c = shard.committed
        parts = [part] if earlier else c.parts + ([part] if part else [])
        shard.committed = Checkpoint(offset=end, ok=c.ok + len(records) - errors, errors=c.errors + errors,
                                     parts=parts, done=done)
        renew = (lambda: None) if done else (lambda: self._renew(shard))  # a done shard has no lease to keep
        # Committed all the same if the lease goes meanwhile: this copy then lags, and the next commit is refused.
        with contextlib.suppress(_LeaseLost):
            self._ride_out(shard, lambda: self._write_durable(shard), between=renew)
        self._delete_replaced(shard, earlier)
        log.info("commit", extra={"job_id": shard.job_id, "shard": shard.index, "start": start, "end": end,
                                  "done": done})
        return True

    def _ride_out(self, shard: _Shard, step, *, between=lambda: None):
        return self.faults.ride_out(step, job_id=shard.job_id, shard=shard.index, output=shard.root,
                                    between=between)

    def _write_part(self, shard: _Shard, start: int, end: int, records: list[dict], earlier: list[str]) -> str:
        """``earlier``: the shard's committed parts, written again with ``records`` as one part of it whole."""
        token = shard.lease.token
        with self._hooks.timed("write"):
            if earlier:
                return shard.sink.write_whole(shard.index, end, token, earlier, records)
            return shard.sink.write_part(shard.index, start, end, token, records)

    def _commit_step(self, shard: _Shard, end: int, commit: Commit, part: str | None,
                     kinds: dict[str, ErrorKind], whole: bool = False) -> bool:
        usage = self._hooks.usage(commit)  # the ledger's row, in the commit's own transaction
        with self._hooks.timed("commit"):
            return self.store.commit(shard.job_id, shard.index, shard.lease.token, offset=end, ok=commit.ok,
                                     errors=commit.errors, part=part, done=commit.done,
                                     ttl_s=self.settings.lease_ttl_s, usage=usage, kinds=kinds, whole=whole)

    @staticmethod
    def _delete_replaced(shard: _Shard, earlier: list[str]) -> None:
        """After the durable copy names the whole part (a rebuild from an older copy still finds the parts it
        lists): the parts it replaced are orphans now. One left behind is never read, so a failure is logged."""
        for name in earlier:
            try:
                shard.sink.delete_part(name)
            except Exception as exc:
                log.warning("replaced part not deleted", extra={"job_id": shard.job_id, "shard": shard.index,
                                                                 "part": name, "error": f"{type(exc).__name__}: {exc}"})

    def _renew(self, shard: _Shard) -> None:
        """Between pauses of a wait that holds the lease: keep it, so no one takes the shard over (and
        counts a takeover towards the poison rule) from a worker that is alive and only waiting."""
        try:
            held = self.store.commit(shard.job_id, shard.index, shard.lease.token, offset=shard.committed.offset,
                                     ok=0, errors=0, part=None, done=False, ttl_s=self.settings.lease_ttl_s)
        except Exception as exc:
            if infrastructure(exc) is None:
                raise
            return  # the store is out too: the commit, when it comes, is fenced all the same
        if not held:
            raise _LeaseLost

    def _write_durable(self, shard: _Shard) -> None:
        # After the fenced commit: a copy may lag the store by one commit
        # (the range is then redone on a rebuild), never run ahead of it.
        shard.sink.write_checkpoint(shard.index, {**shard.committed.as_dict(), "token": shard.lease.token})

    def _fail(self, shard: _Shard, reason: str) -> Outcome:
        failed = self.store.fail_shard(shard.job_id, shard.index, shard.lease.token, reason)
        if failed:
            log.error("shard failed", extra={"job_id": shard.job_id, "shard": shard.index, "reason": reason})
        # Recorded and finalised before anything is written: the output may be what failed.
        finalize_if_complete(self.store, shard.job_id, self._hooks)
        if failed:
            shard.committed.failed = reason
            try:
                self._write_durable(shard)
            except Exception as exc:  # `resume` after a store loss then retries the shard from its last copy
                log.warning("durable copy of a failed shard not written", extra={
                    "job_id": shard.job_id, "shard": shard.index, "error": f"{type(exc).__name__}: {exc}"})
        return Outcome.FAILED

    def _poison_reason(self, shard: _Shard) -> str:
        offset = shard.committed.offset
        return (f"workers died or stalled {shard.lease.takeovers} times on this shard without progress past "
                f"input {offset} of {len(shard.uris)} (next: {shard.uris[offset]}); an input there may crash "
                "the decoder or the model, or the worker may run out of memory")


def _ended(progress: Progress | None) -> Outcome | None:
    """What a worker on the job does when it has ended, cancelled or failed (e.g. stopped early): stop."""
    return {"cancelled": Outcome.CANCELLED, "failed": Outcome.STOPPED}.get(progress.state) if progress else None


def _error_kinds(records: list[dict]) -> dict[str, ErrorKind]:
    """The records' errors by kind, each kind with its first reason (the job keeps its first example)."""
    kinds: dict[str, ErrorKind] = {}
    for record in records:
        if record["status"] == "error":
            kinds.setdefault(kind_of(record["error"]), ErrorKind(0, record["error"])).count += 1
    return kinds

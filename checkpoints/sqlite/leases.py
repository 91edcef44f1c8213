"""Shard leases in SQLite: the ``shards`` and ``parts`` tables; a commit writes its ledger usage in its own
transaction."""
import time

from visionfleet.checkpoints.job_book import ErrorKind
from visionfleet.checkpoints.run_ledger import Usage
from visionfleet.checkpoints.shard_leases import Checkpoint, Lease, ShardLeases, new_token
from visionfleet.checkpoints.sqlite.db import SqliteDb
from visionfleet.checkpoints.sqlite.ledger import record_usage


class SqliteLeases(SqliteDb, ShardLeases):
    def acquire(self, job_id: str, shard: int, owner: str, ttl_s: float) -> Lease | None:
        now = time.time()
        with self._tx() as db:
            db.execute("INSERT OR IGNORE INTO shards (job_id, idx) VALUES (?, ?)", (job_id, shard))
            holder, until, takeovers, alive_until, inflight = db.execute(
                "SELECT owner, lease_until, takeovers, alive_until, inflight FROM shards WHERE job_id = ? AND idx = ?",
                (job_id, shard)).fetchone()
            alive = until > now and (alive_until is None or alive_until > now)
            if holder and holder != owner and alive:
                return None
            if holder and holder != owner:  # the holder died or stalled: what it had not committed is redone
                takeovers += 1
                db.execute("UPDATE jobs SET takeovers = takeovers + 1, redone = redone + ? WHERE job_id = ?",
                           (inflight or 0, job_id))
            lease = Lease(new_token(), takeovers)
            db.execute("UPDATE shards SET owner = ?, token = ?, lease_until = ?, takeovers = ?, alive_until = NULL, "
                       "inflight = 0 WHERE job_id = ? AND idx = ?",
                       (owner, lease.token, now + ttl_s, takeovers, job_id, shard))
            db.execute("UPDATE jobs SET started_at = COALESCE(started_at, ?) WHERE job_id = ?", (now, job_id))
            return lease

    def checkpoint(self, job_id: str, shard: int) -> Checkpoint:
        rows = self._all('SELECT "offset", ok, errors, done, failed FROM shards WHERE job_id = ? AND idx = ?',
                         job_id, shard)
        if not rows:
            return Checkpoint()
        offset, ok, errors, done, failed = rows[0]
        parts = [r[0] for r in self._all("SELECT name FROM parts WHERE job_id = ? AND idx = ? ORDER BY seq",
                                         job_id, shard)]
        return Checkpoint(offset=offset, ok=ok, errors=errors, parts=parts, done=bool(done), failed=failed)

    @staticmethod
    def _held(db, job_id: str, shard: int, token: str) -> tuple | None:
        row = db.execute('SELECT token, done, "offset" FROM shards WHERE job_id = ? AND idx = ?',
                         (job_id, shard)).fetchone()
        return row if row is not None and row[0] == token and not row[1] else None

    @staticmethod
    def _stopped(db, job_id: str) -> bool:
        """A failed job stopped (early, or its model cannot run): its summary lists what it had."""
        return db.execute("SELECT 1 FROM jobs WHERE job_id = ? AND state = 'failed'", (job_id,)).fetchone() is not None

    def commit(self, job_id: str, shard: int, token: str, *, offset: int, ok: int, errors: int,
               part: str | None, done: bool, ttl_s: float, usage: Usage | None = None,
               kinds: dict[str, ErrorKind] | None = None, whole: bool = False) -> bool:
        now = time.time()
        with self._tx() as db:
            if part and db.execute("SELECT 1 FROM parts WHERE job_id = ? AND name = ?", (job_id, part)).fetchone():
                return True  # this very commit went through already (a retry): count it once
            held = self._held(db, job_id, shard, token)
            if held is None or self._stopped(db, job_id):
                return False
            db.execute('UPDATE shards SET "offset" = ?, ok = ok + ?, errors = errors + ?, lease_until = ?, inflight = 0, '
                       "takeovers = CASE WHEN ? > ? THEN 0 ELSE takeovers END WHERE job_id = ? AND idx = ?",
                       (offset, ok, errors, now + ttl_s, offset, held[2], job_id, shard))
            db.execute("UPDATE jobs SET ok = ok + ?, errors = errors + ?, updated_at = ? WHERE job_id = ?",
                       (ok, errors, now, job_id))
            if whole:
                db.execute("DELETE FROM parts WHERE job_id = ? AND idx = ?", (job_id, shard))
            if part:
                db.execute("INSERT OR IGNORE INTO parts (job_id, idx, name) VALUES (?, ?, ?)", (job_id, shard, part))
            if done:
                db.execute("UPDATE shards SET done = 1, owner = '', lease_until = 0 WHERE job_id = ? AND idx = ?",
                           (job_id, shard))
                db.execute("UPDATE jobs SET shards_done = shards_done + 1 WHERE job_id = ?", (job_id,))
            if usage is not None:
                record_usage(db, job_id, usage, ok + errors, now)
            for kind, e in (kinds or {}).items():
                db.execute("INSERT INTO error_kinds (job_id, kind, count, example) VALUES (?, ?, ?, ?) "
                           "ON CONFLICT (job_id, kind) DO UPDATE SET count = count + excluded.count",
                           (job_id, kind, e.count, e.example))
            return True

    def fail_shard(self, job_id: str, shard: int, token: str, reason: str) -> bool:
        with self._tx() as db:
            if self._held(db, job_id, shard, token) is None:
                return False
            db.execute("UPDATE shards SET failed = ?, owner = '', lease_until = 0 WHERE job_id = ? AND idx = ?",
                       (reason, job_id, shard))
            return True

    def release(self, job_id: str, shard: int, token: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE shards SET owner = '', lease_until = 0, inflight = 0 "
                       "WHERE job_id = ? AND idx = ? AND token = ?", (job_id, shard, token))

    def reopen(self, job_id: str, shards: list[int]) -> list[int]:
        with self._tx() as db:
            reopened = [i for i in shards if db.execute(
                "UPDATE shards SET failed = NULL, takeovers = 0 WHERE job_id = ? AND idx = ? AND failed IS NOT NULL",
                (job_id, i)).rowcount]
            db.execute("UPDATE jobs SET state = NULL, reason = NULL, expires_at = NULL "
                       "WHERE job_id = ? AND state = 'failed'", (job_id,))
            return reopened

    def restore_shard(self, job_id: str, shard: int, checkpoint: Checkpoint) -> None:
        c = checkpoint
        with self._tx() as db:
            db.execute('INSERT OR REPLACE INTO shards (job_id, idx, "offset", ok, errors, done, failed) '
                       "VALUES (?, ?, ?, ?, ?, ?, ?)", (job_id, shard, c.offset, c.ok, c.errors, int(c.done), c.failed))
            db.executemany("INSERT OR IGNORE INTO parts (job_id, idx, name) VALUES (?, ?, ?)",
                           [(job_id, shard, p) for p in c.parts])
            db.execute("UPDATE jobs SET ok = ok + ?, errors = errors + ?, shards_done = shards_done + ? "
                       "WHERE job_id = ?", (c.ok, c.errors, int(c.done), job_id))

"""The job book in SQLite: the ``jobs`` table, the parts and failures its shards recorded, and
the tombstones of purged jobs (``purged``)."""
import json
import time

from visionfleet.checkpoints.job_book import FINAL_STATES, INTERRUPTED, ErrorKind, JobBook, Progress, derive_state
from visionfleet.checkpoints.sqlite.db import JOB_TABLES, SqliteDb


class SqliteJobBook(SqliteDb, JobBook):
    def create_job(self, job_id: str, meta: dict) -> None:
        self._drop_expired()  # housekeeping at a natural moment: not on every read
        with self._tx() as db:
            db.execute("INSERT INTO jobs (job_id, meta, created_at) VALUES (?, ?, ?)",
                       (job_id, json.dumps(meta), meta.get("created_at", time.time())))
            db.execute("DELETE FROM purged WHERE job_id = ?", (job_id,))  # rebuilt by `resume`: known again

    def job_meta(self, job_id: str) -> dict | None:
        rows = self._all("SELECT meta FROM jobs WHERE job_id = ?", job_id)
        return json.loads(rows[0][0]) if rows else None

    def set_planned(self, job_id: str, total: int, shards: int, skipped: int = 0) -> None:
        with self._tx() as db:
            db.execute("UPDATE jobs SET planned = 1, total = ?, shards = ?, skipped = ? WHERE job_id = ?",
                       (total, shards, skipped, job_id))

    def set_state(self, job_id: str, state: str, reason: str | None = None) -> None:
        expires = time.time() + self.job_ttl_s if self.job_ttl_s is not None and state in FINAL_STATES else None
        with self._tx() as db:
            db.execute("UPDATE jobs SET state = ?, reason = ?, expires_at = ? WHERE job_id = ?",
                       (state, reason, expires, job_id))

    def clear_state(self, job_id: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE jobs SET state = NULL, reason = NULL, expires_at = NULL WHERE job_id = ?", (job_id,))

    def jobs(self, limit: int) -> list[Progress]:
        self._drop_expired()
        ids = [r[0] for r in self._all("SELECT job_id FROM jobs ORDER BY created_at DESC LIMIT ?", limit)]
        return [p for p in map(self.progress, ids) if p is not None]

    def purge(self, job_id: str) -> None:
        now = time.time()
        with self._tx() as db:
            self._forget(db, job_id)
            db.execute("INSERT OR REPLACE INTO purged (job_id, purged_at, expires_at) VALUES (?, ?, ?)",
                       (job_id, now, now + self.tombstone_ttl_s))

    def purged_at(self, job_id: str) -> float | None:
        rows = self._all("SELECT purged_at FROM purged WHERE job_id = ? AND expires_at > ?", job_id, time.time())
        return rows[0][0] if rows else None

    @staticmethod
    def _forget(db, job_id: str) -> None:
        for table in JOB_TABLES:
            db.execute(f"DELETE FROM {table} WHERE job_id = ?", (job_id,))

    def _drop_expired(self) -> None:
        """Expired jobs go without a tombstone (the TTL is documented); expired tombstones go too."""
        now = time.time()
        expired = [r[0] for r in self._all("SELECT job_id FROM jobs WHERE expires_at < ?", now)]
        if not expired and not self._all("SELECT 1 FROM purged WHERE expires_at < ? LIMIT 1", now):
            return  # the usual case: no write lock taken
        with self._tx() as db:
            for job_id in expired:
                self._forget(db, job_id)
            db.execute("DELETE FROM purged WHERE expires_at < ?", (now,))

    def progress(self, job_id: str) -> Progress | None:
        rows = self._all("SELECT planned, total, shards, shards_done, ok, errors, state, reason, created_at, "
                         "started_at, updated_at, seen_at, skipped FROM jobs WHERE job_id = ?", job_id)
        if not rows:
            return None
        planned, total, shards, shards_done, ok, errors, state, reason, created, started, updated, seen, skipped = \
            rows[0]
        failed = dict(self._all("SELECT idx, failed FROM shards WHERE job_id = ? AND failed IS NOT NULL", job_id))
        return Progress(
            job_id=job_id, state=derive_state(state, started is not None), planned=bool(planned), total=total,
            shards=shards, shards_done=shards_done, ok=ok, errors=errors, created_at=created,
            started_at=started, updated_at=updated, failed_shards=failed, reason=reason, seen_at=seen,
            interrupted=state == INTERRUPTED, skipped=skipped or 0,
        )

    def parts(self, job_id: str) -> list[str]:
        return [r[0] for r in self._all("SELECT name FROM parts WHERE job_id = ? ORDER BY name", job_id)]

    def error_kinds(self, job_id: str) -> dict[str, ErrorKind]:
        rows = self._all("SELECT kind, count, example FROM error_kinds WHERE job_id = ?", job_id)
        return {kind: ErrorKind(count, example) for kind, count, example in rows}

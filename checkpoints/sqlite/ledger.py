"""The run ledger in SQLite: the ``timeline``, ``seconds`` and ``machines`` tables, and the job's event counts."""
from visionfleet.checkpoints.run_ledger import LEDGER_EVENTS, SECONDS_KEPT, RunLedger, Usage
from visionfleet.checkpoints.sqlite.db import SqliteDb


class SqliteLedger(SqliteDb, RunLedger):
    def note(self, job_id: str, event: str) -> None:
        if event not in LEDGER_EVENTS:  # a column name: never from outside the product
            raise ValueError(f"not a ledger event: {event}")
        with self._tx() as db:
            db.execute(f"UPDATE jobs SET {event} = {event} + 1 WHERE job_id = ?", (job_id,))

    def ledger(self, job_id: str) -> dict:
        counts = self._all(f"SELECT redone, takeovers, {', '.join(LEDGER_EVENTS)} FROM jobs WHERE job_id = ?", job_id)
        machines = self._all("SELECT host, images, busy_s, first_at, last_at FROM machines WHERE job_id = ?", job_id)
        return {"timeline": dict(self._all("SELECT minute, images FROM timeline WHERE job_id = ?", job_id)),
                "seconds": dict(self._all("SELECT second, images FROM seconds WHERE job_id = ?", job_id)),
                "workers": {host: {"images": images, "busy_s": busy, "first_at": first, "last_at": last}
                            for host, images, busy, first, last in machines},
                **dict(zip(("redone", "takeovers", *LEDGER_EVENTS), counts[0] if counts else (0,) * 4))}


def record_usage(db, job_id: str, usage: Usage, images: int, now: float) -> None:
    """The ledger's part of a fenced commit, inside the commit's own transaction ``db``."""
    db.execute("INSERT INTO timeline VALUES (?, ?, ?) ON CONFLICT (job_id, minute) "
               "DO UPDATE SET images = images + excluded.images", (job_id, int(now // 60 * 60), images))
    # A new second only while the job has fewer than SECONDS_KEPT (why: run_ledger.SECONDS_KEPT).
    db.execute("INSERT INTO seconds SELECT ?, ?, ? WHERE (SELECT COUNT(*) FROM seconds WHERE job_id = ?) < ? "
               "OR EXISTS (SELECT 1 FROM seconds WHERE job_id = ? AND second = ?) ON CONFLICT (job_id, second) "
               "DO UPDATE SET images = images + excluded.images",
               (job_id, int(now), images, job_id, SECONDS_KEPT, job_id, int(now)))
    db.execute("INSERT INTO machines VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (job_id, host) DO UPDATE SET "
               "images = images + excluded.images, busy_s = busy_s + excluded.busy_s, "
               "first_at = MIN(first_at, excluded.first_at), last_at = MAX(last_at, excluded.last_at)",
               (job_id, usage.machine, images, usage.busy_s, now - usage.busy_s, now))

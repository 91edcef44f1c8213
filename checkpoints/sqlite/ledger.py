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
    _spread_seconds(db, job_id, images, now - usage.busy_s, now)
    db.execute("INSERT INTO machines VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (job_id, host) DO UPDATE SET "
               "images = images + excluded.images, busy_s = busy_s + excluded.busy_s, "
               "first_at = MIN(first_at, excluded.first_at), last_at = MAX(last_at, excluded.last_at)",
               (job_id, usage.machine, images, usage.busy_s, now - usage.busy_s, now))


def _spread_seconds(db, job_id: str, images: int, start: float, end: float) -> None:
    """The commit's images spread evenly over the seconds they took to label; a new second only while the job
    has fewer than ``SECONDS_KEPT`` (why: ``run_ledger.SECONDS_KEPT``), as usage.lua does on Redis."""
    first, n = int(start // 1), int(end // 1) - int(start // 1) + 1
    if n > SECONDS_KEPT:
        return  # more seconds than are kept: the report draws this job by the minute
    have = {row[0] for row in db.execute("SELECT second FROM seconds WHERE job_id = ? AND second BETWEEN ? AND ?",
                                         (job_id, first, first + n - 1))}
    room = SECONDS_KEPT - db.execute("SELECT COUNT(*) FROM seconds WHERE job_id = ?", (job_id,)).fetchone()[0]
    rows = []
    for i in range(n):
        share = (i + 1) * images // n - i * images // n
        if share and (first + i in have or room > 0):
            room -= first + i not in have
            rows.append((job_id, first + i, share))
    db.executemany("INSERT INTO seconds VALUES (?, ?, ?) ON CONFLICT (job_id, second) "
                   "DO UPDATE SET images = images + excluded.images", rows)

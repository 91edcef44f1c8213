"""The state store in one SQLite file: the embedded default, no server.

Worker processes on one machine share the file; ``BEGIN IMMEDIATE`` takes
the write lock up front so each read-check-write below is atomic across
processes, like the Lua scripts of the Redis store.
"""
import json
import os
import sqlite3
import threading
import time
from contextlib import contextmanager

from visionfleet.checkpoints.state import (
    FINAL_STATES, LEDGER_EVENTS, Checkpoint, Lease, Progress, StateStore, derive_state, new_token,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
  job_id TEXT PRIMARY KEY, meta TEXT NOT NULL, planned INT DEFAULT 0, total INT DEFAULT 0,
  shards INT DEFAULT 0, ok INT DEFAULT 0, errors INT DEFAULT 0, shards_done INT DEFAULT 0,
  state TEXT, reason TEXT, created_at REAL, started_at REAL, updated_at REAL);
CREATE TABLE IF NOT EXISTS shards (
  job_id TEXT, idx INT, "offset" INT DEFAULT 0, ok INT DEFAULT 0, errors INT DEFAULT 0,
  done INT DEFAULT 0, failed TEXT, owner TEXT DEFAULT '', token TEXT, lease_until REAL DEFAULT 0,
  takeovers INT DEFAULT 0, PRIMARY KEY (job_id, idx));
CREATE TABLE IF NOT EXISTS parts (job_id TEXT, idx INT, name TEXT, seq INTEGER PRIMARY KEY AUTOINCREMENT);
CREATE UNIQUE INDEX IF NOT EXISTS parts_by_name ON parts (job_id, name);
CREATE TABLE IF NOT EXISTS workers (owner TEXT PRIMARY KEY, info TEXT NOT NULL, alive_until REAL NOT NULL);
CREATE TABLE IF NOT EXISTS timeline (job_id TEXT, minute INT, images INT, PRIMARY KEY (job_id, minute));
CREATE TABLE IF NOT EXISTS machines (job_id TEXT, host TEXT, images INT, busy_s REAL, first_at REAL, last_at REAL,
  PRIMARY KEY (job_id, host));
"""
_JOB_TABLES = ("jobs", "shards", "parts", "timeline", "machines")
# Columns added after the first release: a state file from then gains them on open.
_ADDED = {"shards": {"alive_until": "REAL", "inflight": "INT DEFAULT 0"}, "workers": {"sweep_at": "REAL"},
          "jobs": {"seen_at": "REAL", "expires_at": "REAL", "redone": "INT DEFAULT 0", "takeovers": "INT DEFAULT 0",
                   "drains": "INT DEFAULT 0", "spot_notices": "INT DEFAULT 0"}}


class SqliteStore(StateStore):
    def __init__(self, path: str, *, job_ttl_s: float | None = None) -> None:
        self.job_ttl_s = job_ttl_s
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        self._lock = threading.Lock()
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)
        self._migrate()

    def _migrate(self) -> None:
        for table, columns in _ADDED.items():
            have = {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}
            for name, kind in columns.items():
                if name not in have:
                    self._db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")

    @contextmanager
    def _tx(self):
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                # A Ctrl-C can land between any two steps, even just after BEGIN: whatever
                # is open is rolled back, or every later call would fail on it.
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise

    def _all(self, sql: str, *args) -> list:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def create_job(self, job_id: str, meta: dict) -> None:
        self._drop_expired()  # housekeeping at a natural moment: not on every read
        with self._tx() as db:
            db.execute("INSERT INTO jobs (job_id, meta, created_at) VALUES (?, ?, ?)",
                       (job_id, json.dumps(meta), meta.get("created_at", time.time())))

    def job_meta(self, job_id: str) -> dict | None:
        rows = self._all("SELECT meta FROM jobs WHERE job_id = ?", job_id)
        return json.loads(rows[0][0]) if rows else None

    def set_planned(self, job_id: str, total: int, shards: int) -> None:
        with self._tx() as db:
            db.execute("UPDATE jobs SET planned = 1, total = ?, shards = ? WHERE job_id = ?", (total, shards, job_id))

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

    def commit(self, job_id, shard, token, *, offset, ok, errors, part, done, ttl_s, worker="", busy_s=0.0) -> bool:
        now = time.time()
        with self._tx() as db:
            if part and db.execute("SELECT 1 FROM parts WHERE job_id = ? AND name = ?", (job_id, part)).fetchone():
                return True  # this very commit went through already (a retry): count it once
            held = self._held(db, job_id, shard, token)
            if held is None:
                return False
            db.execute('UPDATE shards SET "offset" = ?, ok = ok + ?, errors = errors + ?, lease_until = ?, inflight = 0, '
                       "takeovers = CASE WHEN ? > ? THEN 0 ELSE takeovers END WHERE job_id = ? AND idx = ?",
                       (offset, ok, errors, now + ttl_s, offset, held[2], job_id, shard))
            db.execute("UPDATE jobs SET ok = ok + ?, errors = errors + ?, updated_at = ? WHERE job_id = ?",
                       (ok, errors, now, job_id))
            if part:
                db.execute("INSERT OR IGNORE INTO parts (job_id, idx, name) VALUES (?, ?, ?)", (job_id, shard, part))
            if done:
                db.execute("UPDATE shards SET done = 1, owner = '', lease_until = 0 WHERE job_id = ? AND idx = ?",
                           (job_id, shard))
                db.execute("UPDATE jobs SET shards_done = shards_done + 1 WHERE job_id = ?", (job_id,))
            if worker:
                self._ledger_commit(db, job_id, worker, ok + errors, busy_s, now)
            return True

    @staticmethod
    def _ledger_commit(db, job_id: str, worker: str, images: int, busy_s: float, now: float) -> None:
        db.execute("INSERT INTO timeline VALUES (?, ?, ?) ON CONFLICT (job_id, minute) "
                   "DO UPDATE SET images = images + excluded.images", (job_id, int(now // 60 * 60), images))
        db.execute("INSERT INTO machines VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (job_id, host) DO UPDATE SET "
                   "images = images + excluded.images, busy_s = busy_s + excluded.busy_s, "
                   "first_at = MIN(first_at, excluded.first_at), last_at = MAX(last_at, excluded.last_at)",
                   (job_id, worker, images, busy_s, now - busy_s, now))

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

    def set_state(self, job_id: str, state: str, reason: str | None = None) -> None:
        expires = time.time() + self.job_ttl_s if self.job_ttl_s is not None and state in FINAL_STATES else None
        with self._tx() as db:
            db.execute("UPDATE jobs SET state = ?, reason = ?, expires_at = ? WHERE job_id = ?",
                       (state, reason, expires, job_id))

    def jobs(self, limit: int) -> list[Progress]:
        self._drop_expired()
        ids = [r[0] for r in self._all("SELECT job_id FROM jobs ORDER BY created_at DESC LIMIT ?", limit)]
        return [p for p in map(self.progress, ids) if p is not None]

    def purge(self, job_id: str) -> None:
        with self._tx() as db:
            for table in _JOB_TABLES:
                db.execute(f"DELETE FROM {table} WHERE job_id = ?", (job_id,))

    def _drop_expired(self) -> None:
        expired = [r[0] for r in self._all("SELECT job_id FROM jobs WHERE expires_at < ?", time.time())]
        for job_id in expired:
            self.purge(job_id)

    def progress(self, job_id: str) -> Progress | None:
        rows = self._all("SELECT planned, total, shards, shards_done, ok, errors, state, reason, created_at, "
                         "started_at, updated_at, seen_at FROM jobs WHERE job_id = ?", job_id)
        if not rows:
            return None
        planned, total, shards, shards_done, ok, errors, state, reason, created, started, updated, seen = rows[0]
        failed = dict(self._all("SELECT idx, failed FROM shards WHERE job_id = ? AND failed IS NOT NULL", job_id))
        return Progress(
            job_id=job_id, state=derive_state(state, started is not None), planned=bool(planned), total=total,
            shards=shards, shards_done=shards_done, ok=ok, errors=errors, created_at=created,
            started_at=started, updated_at=updated, failed_shards=failed, reason=reason, seen_at=seen,
        )

    def parts(self, job_id: str) -> list[str]:
        return [r[0] for r in self._all("SELECT name FROM parts WHERE job_id = ? ORDER BY name", job_id)]

    def beat(self, owner: str, info: dict, ttl_s: float) -> None:
        now = time.time()
        job_id, shard, token = info.get("job_id"), info.get("shard"), info.get("token")
        record = json.dumps({**info, "owner": owner, "seen_at": now, "alive_until": now + ttl_s})
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO workers (owner, info, alive_until, sweep_at) VALUES (?, ?, ?, ?)",
                       (owner, record, now + ttl_s, now + ttl_s))
            if job_id:
                db.execute("UPDATE jobs SET seen_at = ? WHERE job_id = ?", (now, job_id))
                db.execute("UPDATE shards SET alive_until = ?, inflight = ? WHERE job_id = ? AND idx = ? AND token = ?",
                           (now + ttl_s, info.get("labelled", 0), job_id, shard, token))

    def note(self, job_id: str, event: str) -> None:
        if event not in LEDGER_EVENTS:  # a column name: never from outside the product
            raise ValueError(f"not a ledger event: {event}")
        with self._tx() as db:
            db.execute(f"UPDATE jobs SET {event} = {event} + 1 WHERE job_id = ?", (job_id,))

    def ledger(self, job_id: str) -> dict:
        counts = self._all(f"SELECT redone, takeovers, {', '.join(LEDGER_EVENTS)} FROM jobs WHERE job_id = ?", job_id)
        machines = self._all("SELECT host, images, busy_s, first_at, last_at FROM machines WHERE job_id = ?", job_id)
        return {"timeline": dict(self._all("SELECT minute, images FROM timeline WHERE job_id = ?", job_id)),
                "workers": {host: {"images": images, "busy_s": busy, "first_at": first, "last_at": last}
                            for host, images, busy, first, last in machines},
                **dict(zip(("redone", "takeovers", *LEDGER_EVENTS), counts[0] if counts else (0,) * 4))}

    def workers(self) -> list[dict]:
        now = time.time()
        with self._tx() as db:
            records = [json.loads(row[0]) for row in db.execute("SELECT info FROM workers")]
            # A lapsed one that names a shard is left for the sweep (reoffer_orphans).
            db.executemany("DELETE FROM workers WHERE owner = ?",
                           [(r["owner"],) for r in records if r["alive_until"] <= now and not _holds(r)])
            return [r for r in records if r["alive_until"] > now]

    def forget(self, owner: str) -> None:
        with self._tx() as db:
            row = db.execute("SELECT info FROM workers WHERE owner = ?", (owner,)).fetchone()
            info = json.loads(row[0]) if row else {}
            if _holds(info):
                db.execute("UPDATE shards SET alive_until = 0 WHERE job_id = ? AND idx = ? AND token = ?",
                           (info["job_id"], info["shard"], info.get("token")))
            if self._held_by(db, owner, info):  # kept, lapsed: a sweep offers the shard again
                db.execute("UPDATE workers SET info = ?, alive_until = 0, sweep_at = 0 WHERE owner = ?",
                           (json.dumps({**info, "alive_until": 0}), owner))
            else:
                db.execute("DELETE FROM workers WHERE owner = ?", (owner,))

    @staticmethod
    def _held_by(db, owner: str, info: dict) -> bool:
        """The shard ``info`` names is still leased to ``owner``, with the token it names."""
        if not _holds(info):
            return False
        row = db.execute("SELECT owner, token FROM shards WHERE job_id = ? AND idx = ?",
                         (info["job_id"], info["shard"])).fetchone()
        return row is not None and row[0] == owner and row[1] == info.get("token")

    def _lapsed(self, limit: int) -> list[tuple[str, dict]]:
        rows = self._all("SELECT owner, info FROM workers WHERE COALESCE(sweep_at, alive_until) <= ? LIMIT ?",
                         time.time(), limit)
        return [(owner, json.loads(info)) for owner, info in rows]

    def _claim_orphan(self, owner: str, info: dict, grace_s: float) -> bool:
        now = time.time()
        with self._tx() as db:
            row = db.execute("SELECT COALESCE(sweep_at, alive_until) FROM workers WHERE owner = ?",
                             (owner,)).fetchone()
            if row is None or row[0] > now:  # gone, alive again, or claimed by another sweep
                return False
            if self._held_by(db, owner, info):
                db.execute("UPDATE workers SET sweep_at = ? WHERE owner = ?", (now + grace_s, owner))
                return True
            db.execute("DELETE FROM workers WHERE owner = ?", (owner,))
            return False

    def _settle_orphan(self, owner: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM workers WHERE owner = ? AND alive_until <= ?", (owner, time.time()))


def _holds(info: dict) -> bool:
    """The beat names a shard (whether it is still leased to that worker, the shards table says)."""
    return bool(info.get("job_id")) and info.get("shard") is not None

"""One SQLite state file, shared by the store's concerns.

Worker processes on one machine share the file; ``BEGIN IMMEDIATE`` takes
the write lock up front so each read-check-write is atomic across
processes, like the Lua scripts of the Redis store.
"""
import os
import sqlite3
import threading
from contextlib import contextmanager

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
CREATE TABLE IF NOT EXISTS seconds (job_id TEXT, second INT, images INT, PRIMARY KEY (job_id, second));
CREATE TABLE IF NOT EXISTS error_kinds (job_id TEXT, kind TEXT, count INT, example TEXT, PRIMARY KEY (job_id, kind));
CREATE TABLE IF NOT EXISTS machines (job_id TEXT, host TEXT, images INT, busy_s REAL, first_at REAL, last_at REAL,
  PRIMARY KEY (job_id, host));
CREATE TABLE IF NOT EXISTS purged (job_id TEXT PRIMARY KEY, purged_at REAL NOT NULL, expires_at REAL NOT NULL);
"""
JOB_TABLES = ("jobs", "shards", "parts", "timeline", "seconds", "machines", "error_kinds")
# Columns added after the first release: a state file from then gains them on open.
_ADDED = {"shards": {"alive_until": "REAL", "inflight": "INT DEFAULT 0"}, "workers": {"sweep_at": "REAL"},
          "jobs": {"seen_at": "REAL", "expires_at": "REAL", "redone": "INT DEFAULT 0", "takeovers": "INT DEFAULT 0",
                   "drains": "INT DEFAULT 0", "spot_notices": "INT DEFAULT 0", "skipped": "INT DEFAULT 0"}}


class SqliteDb:
    """The connection every concern's mixin works through."""

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

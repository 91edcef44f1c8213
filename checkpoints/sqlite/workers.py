"""The worker registry in SQLite: the ``workers`` table; a beat keeps its shard's lease alive in the same
transaction."""
import json
import time

from visionfleet.checkpoints.sqlite.db import SqliteDb
from visionfleet.checkpoints.worker_registry import WorkerRegistry, names_a_shard


class SqliteWorkers(SqliteDb, WorkerRegistry):
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

    def workers(self) -> list[dict]:
        now = time.time()
        with self._tx() as db:
            records = [json.loads(row[0]) for row in db.execute("SELECT info FROM workers")]
            # A lapsed one that names a shard is left for the sweep (reoffer_orphans).
            db.executemany("DELETE FROM workers WHERE owner = ?",
                           [(r["owner"],) for r in records if r["alive_until"] <= now and not names_a_shard(r)])
            return [r for r in records if r["alive_until"] > now]

    def forget(self, owner: str) -> None:
        with self._tx() as db:
            row = db.execute("SELECT info FROM workers WHERE owner = ?", (owner,)).fetchone()
            info = json.loads(row[0]) if row else {}
            if names_a_shard(info):
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
        if not names_a_shard(info):
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

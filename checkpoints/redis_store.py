"""The state store on Redis: what a fleet shares.

Lease, fencing check and counter updates run as Lua scripts so each is one
atomic step on the server, and lease times come from the server's clock
(``TIME``), so workers' clocks may drift without breaking leases.
"""
import json
import time

import redis

from checkpoints import keys
from checkpoints.state import Checkpoint, Progress, StateStore, derive_state

# KEYS: shard, job. ARGV: owner, ttl_s. Returns the new token or -1.
_ACQUIRE = """
local t = redis.call('TIME'); local now = t[1] + t[2] / 1e6
local s = redis.call('HMGET', KEYS[1], 'owner', 'lease_until')
if s[1] and s[1] ~= ARGV[1] and tonumber(s[2]) > now then return -1 end
local token = redis.call('HINCRBY', KEYS[1], 'token', 1)
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'lease_until', now + tonumber(ARGV[2]))
redis.call('HSETNX', KEYS[2], 'started_at', now)
return token
"""

# KEYS: shard, job, parts. ARGV: token, offset, ok, errors, part, done, ttl_s.
_COMMIT = """
local t = redis.call('TIME'); local now = t[1] + t[2] / 1e6
if redis.call('HGET', KEYS[1], 'token') ~= ARGV[1] then return 0 end
if redis.call('HGET', KEYS[1], 'done') == '1' then return 0 end
redis.call('HSET', KEYS[1], 'offset', ARGV[2], 'lease_until', now + tonumber(ARGV[7]))
redis.call('HINCRBY', KEYS[2], 'ok', ARGV[3])
redis.call('HINCRBY', KEYS[2], 'errors', ARGV[4])
redis.call('HSET', KEYS[2], 'updated_at', now)
if ARGV[5] ~= '' then redis.call('SADD', KEYS[3], ARGV[5]) end
if ARGV[6] == '1' then
  redis.call('HSET', KEYS[1], 'done', '1', 'owner', '', 'lease_until', 0)
  redis.call('HINCRBY', KEYS[2], 'shards_done', 1)
end
return 1
"""

# KEYS: shard, failed. ARGV: token, index, reason.
_FAIL = """
if redis.call('HGET', KEYS[1], 'token') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'failed', ARGV[3], 'owner', '', 'lease_until', 0)
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
return 1
"""

# KEYS: shard. ARGV: token.
_RELEASE = """
if redis.call('HGET', KEYS[1], 'token') == ARGV[1] then
  redis.call('HSET', KEYS[1], 'owner', '', 'lease_until', 0)
end
return 1
"""


class RedisStore(StateStore):
    def __init__(self, url: str) -> None:
        self._r = redis.Redis.from_url(url, decode_responses=True, health_check_interval=30)
        self._acquire = self._r.register_script(_ACQUIRE)
        self._commit = self._r.register_script(_COMMIT)
        self._fail = self._r.register_script(_FAIL)
        self._release = self._r.register_script(_RELEASE)

    def ping(self) -> None:
        self._r.ping()

    def create_job(self, job_id: str, meta: dict) -> None:
        self._r.hset(keys.job(job_id), mapping={
            "meta": json.dumps(meta), "planned": 0, "total": 0, "shards": 0, "ok": 0, "errors": 0,
            "shards_done": 0, "created_at": time.time(),
        })

    def job_meta(self, job_id: str) -> dict | None:
        raw = self._r.hget(keys.job(job_id), "meta")
        return json.loads(raw) if raw else None

    def set_planned(self, job_id: str, total: int, shards: int) -> None:
        self._r.hset(keys.job(job_id), mapping={"planned": 1, "total": total, "shards": shards})

    def acquire(self, job_id: str, shard: int, owner: str, ttl_s: float) -> int | None:
        token = self._acquire(keys=[keys.shard(job_id, shard), keys.job(job_id)], args=[owner, ttl_s])
        return None if token < 0 else int(token)

    def checkpoint(self, job_id: str, shard: int) -> Checkpoint:
        offset, done, failed = self._r.hmget(keys.shard(job_id, shard), "offset", "done", "failed")
        return Checkpoint(offset=int(offset or 0), done=done == "1", failed=failed or None)

    def commit(self, job_id, shard, token, *, offset, ok, errors, part, done, ttl_s) -> bool:
        return bool(self._commit(
            keys=[keys.shard(job_id, shard), keys.job(job_id), keys.job_parts(job_id)],
            args=[token, offset, ok, errors, part or "", int(done), ttl_s],
        ))

    def fail_shard(self, job_id: str, shard: int, token: int, reason: str) -> bool:
        return bool(self._fail(keys=[keys.shard(job_id, shard), keys.job_failed(job_id)],
                               args=[token, shard, reason]))

    def release(self, job_id: str, shard: int, token: int) -> None:
        self._release(keys=[keys.shard(job_id, shard)], args=[token])

    def set_state(self, job_id: str, state: str, reason: str | None = None) -> None:
        self._r.hset(keys.job(job_id), mapping={"state": state, "reason": reason or ""})

    def progress(self, job_id: str) -> Progress | None:
        h = self._r.hgetall(keys.job(job_id))
        if not h:
            return None
        failed = {int(k): v for k, v in self._r.hgetall(keys.job_failed(job_id)).items()}
        started = float(h["started_at"]) if h.get("started_at") else None
        return Progress(
            job_id=job_id, state=derive_state(h.get("state"), started is not None),
            planned=h["planned"] == "1", total=int(h["total"]), shards=int(h["shards"]),
            shards_done=int(h["shards_done"]), ok=int(h["ok"]), errors=int(h["errors"]),
            created_at=float(h["created_at"]), started_at=started,
            updated_at=float(h["updated_at"]) if h.get("updated_at") else None,
            failed_shards=failed, reason=h.get("reason") or None,
        )

    def parts(self, job_id: str) -> list[str]:
        return sorted(self._r.smembers(keys.job_parts(job_id)))

"""Worker records in Redis: heartbeats, who is alive, and dead holders whose shards are offered again.

Times come from the server's clock (``TIME``), like the leases they keep alive.
"""
import json

import redis

from visionfleet.checkpoints import keys

# KEYS: workers, job ('' if none), shard ('' if none), workers sweep. ARGV: owner, info JSON, ttl_s, token.
_BEAT = """
local t = redis.call('TIME'); local now = t[1] + t[2] / 1e6
local info = cjson.decode(ARGV[2])
info['seen_at'] = now
info['alive_until'] = now + tonumber(ARGV[3])
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(info))
redis.call('ZADD', KEYS[4], info['alive_until'], ARGV[1])
-- Only a job the store knows: after Redis lost its data, a beat must not recreate half a job.
if KEYS[2] ~= '' and redis.call('EXISTS', KEYS[2]) == 1 then redis.call('HSET', KEYS[2], 'seen_at', now) end
if KEYS[3] ~= '' and redis.call('HGET', KEYS[3], 'token') == ARGV[4] then
  redis.call('HSET', KEYS[3], 'alive_until', now + tonumber(ARGV[3]), 'inflight', tonumber(info['labelled'] or 0))
end
"""

# KEYS: workers, shard ('' if none), workers sweep. ARGV: owner, token, its record lapsed.
# A shard still leased to it keeps the record, lapsed, so that a sweep offers the shard again.
_FORGET = """
local held = false
if KEYS[2] ~= '' then
  local s = redis.call('HMGET', KEYS[2], 'token', 'owner')
  if s[1] == ARGV[2] then redis.call('HSET', KEYS[2], 'alive_until', 0) end
  held = s[1] == ARGV[2] and s[2] == ARGV[1]
end
if held then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
  redis.call('ZADD', KEYS[3], 0, ARGV[1])
else
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('ZREM', KEYS[3], ARGV[1])
end
"""

# KEYS: workers, workers sweep, shard ('' if none). ARGV: owner, token, grace_s.
# Returns 1 when the caller is to offer the shard again (claimed for grace_s).
_CLAIM = """
local t = redis.call('TIME'); local now = t[1] + t[2] / 1e6
local at = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not at or tonumber(at) > now then return 0 end
if KEYS[3] ~= '' then
  local s = redis.call('HMGET', KEYS[3], 'owner', 'token')
  if s[1] == ARGV[1] and s[2] == ARGV[2] then
    redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ARGV[1])
    return 1
  end
end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 0
"""

# KEYS: workers, workers sweep. ARGV: owner.
_SETTLE = """
local t = redis.call('TIME'); local now = t[1] + t[2] / 1e6
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if raw and tonumber(cjson.decode(raw)['alive_until']) > now then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
"""


class RedisWorkers:
    """The worker-record part of ``RedisStore`` (its ``_r`` is the client)."""

    _r: redis.Redis

    def _register_worker_scripts(self) -> None:
        self._beat = self._r.register_script(_BEAT)
        self._forget = self._r.register_script(_FORGET)
        self._claim = self._r.register_script(_CLAIM)
        self._settle = self._r.register_script(_SETTLE)

    def beat(self, owner: str, info: dict, ttl_s: float) -> None:
        job_id = info.get("job_id")
        self._beat(keys=[keys.WORKERS, keys.job(job_id) if job_id else "", _shard_key(info), keys.WORKERS_SWEEP],
                   args=[owner, json.dumps({**info, "owner": owner}), ttl_s, info.get("token") or ""])

    def workers(self) -> list[dict]:
        now = _server_time(self._r)
        records = [json.loads(raw) for raw in self._r.hvals(keys.WORKERS)]
        lapsed = [r["owner"] for r in records if r["alive_until"] <= now and not _holds(r)]  # else: for the sweep
        if lapsed:
            pipe = self._r.pipeline(transaction=False)
            pipe.hdel(keys.WORKERS, *lapsed)
            pipe.zrem(keys.WORKERS_SWEEP, *lapsed)
            pipe.execute()
        return [r for r in records if r["alive_until"] > now]

    def forget(self, owner: str) -> None:
        raw = self._r.hget(keys.WORKERS, owner)
        info = json.loads(raw) if raw else {}
        self._forget(keys=[keys.WORKERS, _shard_key(info), keys.WORKERS_SWEEP],
                     args=[owner, info.get("token") or "", json.dumps({**info, "alive_until": 0})])

    def _lapsed(self, limit: int) -> list[tuple[str, dict]]:
        owners = self._r.zrangebyscore(keys.WORKERS_SWEEP, "-inf", _server_time(self._r), start=0, num=limit)
        raws = self._r.hmget(keys.WORKERS, owners) if owners else []
        return [(owner, json.loads(raw) if raw else {}) for owner, raw in zip(owners, raws)]

    def _claim_orphan(self, owner: str, info: dict, grace_s: float) -> bool:
        return bool(self._claim(keys=[keys.WORKERS, keys.WORKERS_SWEEP, _shard_key(info)],
                                args=[owner, info.get("token") or "", grace_s]))

    def _settle_orphan(self, owner: str) -> None:
        self._settle(keys=[keys.WORKERS, keys.WORKERS_SWEEP], args=[owner])


def _holds(info: dict) -> bool:
    """The beat names a shard (whether it is still leased to that worker, the shard's own hash says)."""
    return bool(info.get("job_id")) and info.get("shard") is not None


def _shard_key(info: dict) -> str:
    return keys.shard(info["job_id"], info["shard"]) if _holds(info) else ""


def _server_time(r: redis.Redis) -> float:
    seconds, micros = r.time()
    return seconds + micros / 1e6

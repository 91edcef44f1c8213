"""The state store on Redis: what a fleet shares.

Lease, fencing check and counter updates run as Lua scripts so each is one
atomic step on the server, and lease times come from the server's clock
(``TIME``), so workers' clocks may drift without breaking leases. Calls
retry through a Redis restart (bounded), so a worker rides it out.
"""
import contextlib
import json
import time
from collections.abc import Callable, Iterator

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from visionfleet.checkpoints import keys
from visionfleet.checkpoints.redis_workers import RedisWorkers
from visionfleet.checkpoints.state import (
    FINAL_STATES, LEDGER_EVENTS, Checkpoint, Lease, Progress, StateStore, derive_state, new_token,
)

# KEYS: shard, job. ARGV: owner, ttl_s, token. Returns takeovers, or nil while another lease runs.
# A takeover adds what the dead holder had labelled and not committed (its last beat) to the job's redone.
_ACQUIRE = """
local t = redis.call('TIME'); local now = t[1] + t[2] / 1e6
local s = redis.call('HMGET', KEYS[1], 'owner', 'lease_until', 'takeovers', 'alive_until')
local holder = s[1] or ''
local alive = tonumber(s[2] or '0') > now and (not s[4] or tonumber(s[4]) > now)
if holder ~= '' and holder ~= ARGV[1] and alive then return false end
local takeovers = tonumber(s[3] or '0')
if holder ~= '' and holder ~= ARGV[1] then
  takeovers = redis.call('HINCRBY', KEYS[1], 'takeovers', 1)
  redis.call('HINCRBY', KEYS[2], 'takeovers', 1)
  redis.call('HINCRBY', KEYS[2], 'redone', tonumber(redis.call('HGET', KEYS[1], 'inflight') or '0'))
end
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'token', ARGV[3], 'lease_until', now + tonumber(ARGV[2]), 'inflight', 0)
redis.call('HDEL', KEYS[1], 'alive_until')  -- the new holder's own beats set it
redis.call('HSETNX', KEYS[2], 'started_at', now)
return takeovers
"""

# KEYS: shard, job, job parts, shard parts, job timeline, job machines.
# ARGV: token, offset, ok, errors, part, done, ttl_s, worker ('' for none), busy_s.
_COMMIT = """
local t = redis.call('TIME'); local now = t[1] + t[2] / 1e6
-- A part's name carries the holder's token and range: listed already, this very commit went through
-- and its reply was lost (the store went away); a retry must not count it twice.
if ARGV[5] ~= '' and redis.call('SISMEMBER', KEYS[3], ARGV[5]) == 1 then return 1 end
local s = redis.call('HMGET', KEYS[1], 'token', 'done', 'offset')
if s[1] ~= ARGV[1] or s[2] == '1' then return 0 end
if tonumber(ARGV[2]) > tonumber(s[3] or '0') then redis.call('HSET', KEYS[1], 'takeovers', 0) end
redis.call('HSET', KEYS[1], 'offset', ARGV[2], 'lease_until', now + tonumber(ARGV[7]), 'inflight', 0)
redis.call('HINCRBY', KEYS[1], 'ok', ARGV[3])
redis.call('HINCRBY', KEYS[1], 'errors', ARGV[4])
redis.call('HINCRBY', KEYS[2], 'ok', ARGV[3])
redis.call('HINCRBY', KEYS[2], 'errors', ARGV[4])
redis.call('HSET', KEYS[2], 'updated_at', now)
if ARGV[5] ~= '' then
  redis.call('SADD', KEYS[3], ARGV[5])
  redis.call('RPUSH', KEYS[4], ARGV[5])
end
if ARGV[6] == '1' then
  redis.call('HSET', KEYS[1], 'done', '1', 'owner', '', 'lease_until', 0)
  redis.call('HINCRBY', KEYS[2], 'shards_done', 1)
end
if ARGV[8] ~= '' then
  local images = tonumber(ARGV[3]) + tonumber(ARGV[4])
  redis.call('HINCRBY', KEYS[5], tostring(math.floor(now / 60) * 60), images)
  redis.call('HINCRBY', KEYS[6], ARGV[8] .. '|images', images)
  redis.call('HINCRBYFLOAT', KEYS[6], ARGV[8] .. '|busy_s', ARGV[9])
  local first = now - tonumber(ARGV[9])
  local had = redis.call('HGET', KEYS[6], ARGV[8] .. '|first_at')
  if not had or first < tonumber(had) then redis.call('HSET', KEYS[6], ARGV[8] .. '|first_at', first) end
  redis.call('HSET', KEYS[6], ARGV[8] .. '|last_at', now)
end
return 1
"""

# KEYS: shard, failed. ARGV: token, index, reason.
_FAIL = """
local s = redis.call('HMGET', KEYS[1], 'token', 'done')
if s[1] ~= ARGV[1] or s[2] == '1' then return 0 end
redis.call('HSET', KEYS[1], 'failed', ARGV[3], 'owner', '', 'lease_until', 0)
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
return 1
"""

# KEYS: shard, failed. ARGV: index. Returns 1 if the shard had failed.
_REOPEN = """
if not redis.call('HGET', KEYS[1], 'failed') then return 0 end
redis.call('HDEL', KEYS[1], 'failed')
redis.call('HSET', KEYS[1], 'takeovers', 0)
redis.call('HDEL', KEYS[2], ARGV[1])
return 1
"""

# KEYS: shard. ARGV: token.
_RELEASE = """
if redis.call('HGET', KEYS[1], 'token') == ARGV[1] then
  redis.call('HSET', KEYS[1], 'owner', '', 'lease_until', 0, 'inflight', 0)
end
return 1
"""


# KEYS: job. ARGV: field.
_NOTE = """
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HINCRBY', KEYS[1], ARGV[1], 1) end
"""

class RedisStore(RedisWorkers, StateStore):
    def __init__(self, url: str, *, retries: int = 12, job_ttl_s: float | None = None) -> None:
        self.job_ttl_s = job_ttl_s
        # ~1 minute of backoff in all: long enough for a Redis restart.
        retry = Retry(ExponentialBackoff(cap=8, base=0.25), retries)
        self._r = redis.Redis.from_url(url, decode_responses=True, health_check_interval=30, retry=retry,
                                       retry_on_error=[redis.ConnectionError, redis.TimeoutError],
                                       socket_connect_timeout=5, socket_timeout=30)
        self._acquire = self._r.register_script(_ACQUIRE)
        self._commit = self._r.register_script(_COMMIT)
        self._fail = self._r.register_script(_FAIL)
        self._release = self._r.register_script(_RELEASE)
        self._reopen = self._r.register_script(_REOPEN)
        self._register_worker_scripts()
        self._note = self._r.register_script(_NOTE)

    def create_job(self, job_id: str, meta: dict) -> None:
        created = meta.get("created_at", time.time())
        pipe = self._r.pipeline(transaction=True)
        pipe.hset(keys.job(job_id), mapping={
            "meta": json.dumps(meta), "planned": 0, "total": 0, "shards": 0, "ok": 0, "errors": 0,
            "shards_done": 0, "created_at": created,
        })
        pipe.zadd(keys.JOBS, {job_id: created})
        pipe.execute()

    def job_meta(self, job_id: str) -> dict | None:
        raw = self._r.hget(keys.job(job_id), "meta")
        return json.loads(raw) if raw else None

    def set_planned(self, job_id: str, total: int, shards: int) -> None:
        self._r.hset(keys.job(job_id), mapping={"planned": 1, "total": total, "shards": shards})

    def acquire(self, job_id: str, shard: int, owner: str, ttl_s: float) -> Lease | None:
        token = new_token()
        takeovers = self._acquire(keys=[keys.shard(job_id, shard), keys.job(job_id)], args=[owner, ttl_s, token])
        return None if takeovers is None else Lease(token, int(takeovers))

    def checkpoint(self, job_id: str, shard: int) -> Checkpoint:
        offset, ok, errors, done, failed = self._r.hmget(
            keys.shard(job_id, shard), "offset", "ok", "errors", "done", "failed")
        return Checkpoint(offset=int(offset or 0), ok=int(ok or 0), errors=int(errors or 0),
                          parts=self._r.lrange(keys.shard_parts(job_id, shard), 0, -1),
                          done=done == "1", failed=failed or None)

    def commit(self, job_id, shard, token, *, offset, ok, errors, part, done, ttl_s, worker="", busy_s=0.0) -> bool:
        return bool(self._commit(
            keys=[keys.shard(job_id, shard), keys.job(job_id), keys.job_parts(job_id), keys.shard_parts(job_id, shard),
                  keys.job_timeline(job_id), keys.job_machines(job_id)],
            args=[token, offset, ok, errors, part or "", int(done), ttl_s, worker, busy_s],
        ))

    def fail_shard(self, job_id: str, shard: int, token: str, reason: str) -> bool:
        return bool(self._fail(keys=[keys.shard(job_id, shard), keys.job_failed(job_id)],
                               args=[token, shard, reason]))

    def release(self, job_id: str, shard: int, token: str) -> None:
        self._release(keys=[keys.shard(job_id, shard)], args=[token])

    def reopen(self, job_id: str, shards: list[int]) -> list[int]:
        reopened = [i for i in shards
                    if self._reopen(keys=[keys.shard(job_id, i), keys.job_failed(job_id)], args=[i])]
        if self._r.hget(keys.job(job_id), "state") == "failed":
            self._r.hdel(keys.job(job_id), "state", "reason")
            self._each_key(job_id, lambda pipe, key: pipe.persist(key))  # running again: kept for good
        return reopened

    def restore_shard(self, job_id: str, shard: int, checkpoint: Checkpoint) -> None:
        c = checkpoint
        pipe = self._r.pipeline(transaction=True)
        pipe.hset(keys.shard(job_id, shard), mapping={"offset": c.offset, "ok": c.ok, "errors": c.errors,
                                                      "done": int(c.done), "owner": "", "lease_until": 0})
        if c.parts:
            pipe.rpush(keys.shard_parts(job_id, shard), *c.parts)
            pipe.sadd(keys.job_parts(job_id), *c.parts)
        pipe.hincrby(keys.job(job_id), "ok", c.ok)
        pipe.hincrby(keys.job(job_id), "errors", c.errors)
        if c.done:
            pipe.hincrby(keys.job(job_id), "shards_done", 1)
        if c.failed:
            pipe.hset(keys.shard(job_id, shard), "failed", c.failed)
            pipe.hset(keys.job_failed(job_id), shard, c.failed)
        pipe.execute()

    def set_state(self, job_id: str, state: str, reason: str | None = None) -> None:
        self._r.hset(keys.job(job_id), mapping={"state": state, "reason": reason or ""})
        if self.job_ttl_s is not None and state in FINAL_STATES:
            self._each_key(job_id, lambda pipe, key: pipe.expire(key, max(1, int(self.job_ttl_s))))
        self._r.publish(keys.job_events(job_id), state)

    @contextlib.contextmanager
    def state_changes(self, job_id: str) -> Iterator[Callable[[float], None]]:
        # Subscribed before the watcher's next read, so a state set between a read and a
        # pause is still heard; a pause that hears nothing lasts its full length.
        with self._r.pubsub(ignore_subscribe_messages=True) as events:
            events.subscribe(keys.job_events(job_id))

            def pause(seconds: float) -> None:
                deadline = time.monotonic() + seconds
                # get_message answers None at once for the subscription's own confirmation.
                while (left := deadline - time.monotonic()) > 0:
                    if events.get_message(timeout=left) is not None:
                        return

            yield pause

    def _each_key(self, job_id: str, act) -> None:
        """``act(pipe, key)`` for every key of the job, in pipelined batches (a 50M job has 100k keys)."""
        shards = int(self._r.hget(keys.job(job_id), "shards") or 0)
        names = [keys.job(job_id), keys.job_parts(job_id), keys.job_failed(job_id), keys.job_timeline(job_id),
                 keys.job_machines(job_id)]
        names += (name for i in range(shards) for name in (keys.shard(job_id, i), keys.shard_parts(job_id, i)))
        for start in range(0, len(names), 10_000):
            pipe = self._r.pipeline(transaction=False)
            for name in names[start:start + 10_000]:
                act(pipe, name)
            pipe.execute()

    def jobs(self, limit: int) -> list[Progress]:
        found = []
        for job_id in self._r.zrevrange(keys.JOBS, 0, -1):
            progress = self.progress(job_id)
            if progress is None:  # expired
                self._r.zrem(keys.JOBS, job_id)
                continue
            found.append(progress)
            if len(found) >= limit:
                break
        return found

    def purge(self, job_id: str) -> None:
        self._each_key(job_id, lambda pipe, key: pipe.delete(key))
        self._r.zrem(keys.JOBS, job_id)

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
            seen_at=float(h["seen_at"]) if h.get("seen_at") else None,
        )

    def parts(self, job_id: str) -> list[str]:
        return sorted(self._r.smembers(keys.job_parts(job_id)))

    def note(self, job_id: str, event: str) -> None:
        if event not in LEDGER_EVENTS:
            raise ValueError(f"not a ledger event: {event}")
        self._note(keys=[keys.job(job_id)], args=[event])

    def ledger(self, job_id: str) -> dict:
        pipe = self._r.pipeline(transaction=False)
        pipe.hgetall(keys.job_timeline(job_id))
        pipe.hgetall(keys.job_machines(job_id))
        pipe.hmget(keys.job(job_id), "redone", "takeovers", *LEDGER_EVENTS)
        timeline, machines, counts = pipe.execute()
        workers: dict[str, dict] = {}
        for name, value in machines.items():
            host, _, what = name.rpartition("|")
            workers.setdefault(host, {})[what] = int(value) if what == "images" else float(value)
        return {"timeline": {int(m): int(n) for m, n in timeline.items()}, "workers": workers,
                **dict(zip(("redone", "takeovers", *LEDGER_EVENTS), (int(c or 0) for c in counts)))}

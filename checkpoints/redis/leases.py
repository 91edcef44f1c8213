"""Shard leases on Redis: each shard's hash and part list; acquire, commit, fail, reopen and release are scripts.

The commit script carries the run ledger's usage (``usage.lua``), so both are one atomic step."""
from visionfleet.checkpoints.job_book import ErrorKind
from visionfleet.checkpoints.redis.db import RedisDb
from visionfleet.checkpoints.run_ledger import SECONDS_KEPT, Usage
from visionfleet.checkpoints.shard_leases import Checkpoint, Lease, ShardLeases, new_token


class RedisLeases(RedisDb, ShardLeases):
    def acquire(self, job_id: str, shard: int, owner: str, ttl_s: float) -> Lease | None:
        token = new_token()
        takeovers = self._lua["acquire"](keys=[self._keys.shard(job_id, shard), self._keys.job(job_id)],
                                         args=[owner, ttl_s, token])
        return None if takeovers is None else Lease(token, int(takeovers))

    def checkpoint(self, job_id: str, shard: int) -> Checkpoint:
        offset, ok, errors, done, failed = self._r.hmget(
            self._keys.shard(job_id, shard), "offset", "ok", "errors", "done", "failed")
        return Checkpoint(offset=int(offset or 0), ok=int(ok or 0), errors=int(errors or 0),
                          parts=self._r.lrange(self._keys.shard_parts(job_id, shard), 0, -1),
                          done=done == "1", failed=failed or None)

    def commit(self, job_id: str, shard: int, token: str, *, offset: int, ok: int, errors: int,
               part: str | None, done: bool, ttl_s: float, usage: Usage | None = None,
               kinds: dict[str, ErrorKind] | None = None, whole: bool = False) -> bool:
        k = self._keys
        machine, busy_s = (usage.machine, usage.busy_s) if usage is not None else ("", 0.0)
        by_kind = [value for kind, e in (kinds or {}).items() for value in (kind, e.count, e.example)]
        return bool(self._lua["commit"](
            keys=[k.shard(job_id, shard), k.job(job_id), k.job_parts(job_id), k.shard_parts(job_id, shard),
                  k.job_timeline(job_id), k.job_machines(job_id), k.job_seconds(job_id), k.job_errors(job_id)],
            args=[token, offset, ok, errors, part or "", int(done), ttl_s, machine, busy_s, SECONDS_KEPT, int(whole),
                  *by_kind],
        ))

    def fail_shard(self, job_id: str, shard: int, token: str, reason: str) -> bool:
        return bool(self._lua["fail_shard"](keys=[self._keys.shard(job_id, shard), self._keys.job_failed(job_id)],
                                            args=[token, shard, reason]))

    def release(self, job_id: str, shard: int, token: str) -> None:
        self._lua["release"](keys=[self._keys.shard(job_id, shard)], args=[token])

    def reopen(self, job_id: str, shards: list[int]) -> list[int]:
        reopened = [i for i in shards if self._lua["reopen"](
            keys=[self._keys.shard(job_id, i), self._keys.job_failed(job_id)], args=[i])]
        if self._r.hget(self._keys.job(job_id), "state") == "failed":
            self._r.hdel(self._keys.job(job_id), "state", "reason")
            self._each_key(job_id, lambda pipe, key: pipe.persist(key))  # running again: kept for good
        return reopened

    def restore_shard(self, job_id: str, shard: int, checkpoint: Checkpoint) -> None:
        c, k = checkpoint, self._keys
        pipe = self._r.pipeline(transaction=True)
        pipe.hset(k.shard(job_id, shard), mapping={"offset": c.offset, "ok": c.ok, "errors": c.errors,
                                                   "done": int(c.done), "owner": "", "lease_until": 0})
        if c.parts:
            pipe.rpush(k.shard_parts(job_id, shard), *c.parts)
            pipe.sadd(k.job_parts(job_id), *c.parts)
        pipe.hincrby(k.job(job_id), "ok", c.ok)
        pipe.hincrby(k.job(job_id), "errors", c.errors)
        if c.done:
            pipe.hincrby(k.job(job_id), "shards_done", 1)
        if c.failed:
            pipe.hset(k.shard(job_id, shard), "failed", c.failed)
            pipe.hset(k.job_failed(job_id), shard, c.failed)
        pipe.execute()

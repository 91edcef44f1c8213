"""The worker registry on Redis: the workers hash and the sweep's sorted set; a beat keeps its shard's lease
alive in the same script."""
import json

from visionfleet.checkpoints.redis.db import RedisDb, server_time
from visionfleet.checkpoints.worker_registry import WorkerRegistry, names_a_shard


class RedisWorkers(RedisDb, WorkerRegistry):
    def beat(self, owner: str, info: dict, ttl_s: float) -> None:
        job_id, k = info.get("job_id"), self._keys
        self._lua["beat"](keys=[k.WORKERS, k.job(job_id) if job_id else "", self._shard_key(info), k.WORKERS_SWEEP],
                          args=[owner, json.dumps({**info, "owner": owner}), ttl_s, info.get("token") or ""])

    def workers(self) -> list[dict]:
        now = server_time(self._r)
        records = [json.loads(raw) for raw in self._r.hvals(self._keys.WORKERS)]
        lapsed = [r["owner"] for r in records if r["alive_until"] <= now and not names_a_shard(r)]  # else: the sweep's
        if lapsed:
            pipe = self._r.pipeline(transaction=False)
            pipe.hdel(self._keys.WORKERS, *lapsed)
            pipe.zrem(self._keys.WORKERS_SWEEP, *lapsed)
            pipe.execute()
        return [r for r in records if r["alive_until"] > now]

    def forget(self, owner: str) -> None:
        raw = self._r.hget(self._keys.WORKERS, owner)
        info = json.loads(raw) if raw else {}
        self._lua["forget"](keys=[self._keys.WORKERS, self._shard_key(info), self._keys.WORKERS_SWEEP],
                            args=[owner, info.get("token") or "", json.dumps({**info, "alive_until": 0})])

    def _lapsed(self, limit: int) -> list[tuple[str, dict]]:
        owners = self._r.zrangebyscore(self._keys.WORKERS_SWEEP, "-inf", server_time(self._r), start=0, num=limit)
        raws = self._r.hmget(self._keys.WORKERS, owners) if owners else []
        return [(owner, json.loads(raw) if raw else {}) for owner, raw in zip(owners, raws)]

    def _claim_orphan(self, owner: str, info: dict, grace_s: float) -> bool:
        return bool(self._lua["claim_orphan"](keys=[self._keys.WORKERS, self._keys.WORKERS_SWEEP,
                                                    self._shard_key(info)],
                                              args=[owner, info.get("token") or "", grace_s]))

    def _settle_orphan(self, owner: str) -> None:
        self._lua["settle_orphan"](keys=[self._keys.WORKERS, self._keys.WORKERS_SWEEP], args=[owner])

    def _shard_key(self, info: dict) -> str:
        return self._keys.shard(info["job_id"], info["shard"]) if names_a_shard(info) else ""

"""The job book on Redis: the job's hash, its parts and failures, the ``jobs`` index, and purged jobs' tombstones."""
import contextlib
import json
import time
from collections.abc import Callable, Iterator

from visionfleet.checkpoints.job_book import FINAL_STATES, INTERRUPTED, ErrorKind, JobBook, Progress, derive_state
from visionfleet.checkpoints.redis.db import RedisDb


class RedisJobBook(RedisDb, JobBook):
    def create_job(self, job_id: str, meta: dict) -> None:
        created = meta.get("created_at", time.time())
        pipe = self._r.pipeline(transaction=True)
        pipe.hset(self._keys.job(job_id), mapping={
            "meta": json.dumps(meta), "planned": 0, "total": 0, "shards": 0, "ok": 0, "errors": 0,
            "shards_done": 0, "created_at": created,
        })
        pipe.zadd(self._keys.JOBS, {job_id: created})
        pipe.delete(self._keys.job_purged(job_id))  # rebuilt by `resume`: known again
        pipe.execute()

    def job_meta(self, job_id: str) -> dict | None:
        raw = self._r.hget(self._keys.job(job_id), "meta")
        return json.loads(raw) if raw else None

    def set_planned(self, job_id: str, total: int, shards: int, skipped: int = 0) -> None:
        self._r.hset(self._keys.job(job_id), mapping={"planned": 1, "total": total, "shards": shards,
                                                      "skipped": skipped})

    def set_state(self, job_id: str, state: str, reason: str | None = None) -> None:
        self._r.hset(self._keys.job(job_id), mapping={"state": state, "reason": reason or ""})
        if self.job_ttl_s is not None and state in FINAL_STATES:
            self._each_key(job_id, lambda pipe, key: pipe.expire(key, max(1, int(self.job_ttl_s))))
        self._r.publish(self._keys.job_events(job_id), state)

    def clear_state(self, job_id: str) -> None:
        self._r.hdel(self._keys.job(job_id), "state", "reason")
        self._each_key(job_id, lambda pipe, key: pipe.persist(key))  # going on: kept for good

    @contextlib.contextmanager
    def state_changes(self, job_id: str) -> Iterator[Callable[[float], None]]:
        # Subscribed before the watcher's next read, so a state set between a read and a
        # pause is still heard; a pause that hears nothing lasts its full length.
        with self._r.pubsub(ignore_subscribe_messages=True) as events:
            events.subscribe(self._keys.job_events(job_id))

            def pause(seconds: float) -> None:
                deadline = time.monotonic() + seconds
                # get_message answers None at once for the subscription's own confirmation.
                while (left := deadline - time.monotonic()) > 0:
                    if events.get_message(timeout=left) is not None:
                        return

            yield pause

    def jobs(self, limit: int) -> list[Progress]:
        found = []
        for job_id in self._r.zrevrange(self._keys.JOBS, 0, -1):
            progress = self.progress(job_id)
            if progress is None:  # expired
                self._r.zrem(self._keys.JOBS, job_id)
                continue
            found.append(progress)
            if len(found) >= limit:
                break
        return found

    def purge(self, job_id: str) -> None:
        self._each_key(job_id, lambda pipe, key: pipe.delete(key))
        self._r.zrem(self._keys.JOBS, job_id)
        self._r.set(self._keys.job_purged(job_id), time.time(), ex=max(1, int(self.tombstone_ttl_s)))

    def purged_at(self, job_id: str) -> float | None:
        when = self._r.get(self._keys.job_purged(job_id))
        return float(when) if when else None

    def progress(self, job_id: str) -> Progress | None:
        h = self._r.hgetall(self._keys.job(job_id))
        if not h:
            return None
        failed = {int(k): v for k, v in self._r.hgetall(self._keys.job_failed(job_id)).items()}
        started = float(h["started_at"]) if h.get("started_at") else None
        return Progress(
            job_id=job_id, state=derive_state(h.get("state"), started is not None),
            planned=h["planned"] == "1", total=int(h["total"]), shards=int(h["shards"]),
            shards_done=int(h["shards_done"]), ok=int(h["ok"]), errors=int(h["errors"]),
            created_at=float(h["created_at"]), started_at=started,
            updated_at=float(h["updated_at"]) if h.get("updated_at") else None,
            failed_shards=failed, reason=h.get("reason") or None,
            seen_at=float(h["seen_at"]) if h.get("seen_at") else None, interrupted=h.get("state") == INTERRUPTED,
            skipped=int(h.get("skipped", 0)),
        )

    def parts(self, job_id: str) -> list[str]:
        return sorted(self._r.smembers(self._keys.job_parts(job_id)))

    def error_kinds(self, job_id: str) -> dict[str, ErrorKind]:
        h = self._r.hgetall(self._keys.job_errors(job_id))
        return {kind: ErrorKind(int(count), h.get(f"{kind}|example", "")) for kind, count in h.items()
                if not kind.endswith("|example")}

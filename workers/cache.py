"""The dedup cache: labels of identical content, kept in Redis with a TTL."""
import json
from collections.abc import Iterable

import redis

from visionfleet.checkpoints import keys


class RedisLabelCache:
    """A ``pipeline.labeller.LabelCache`` on Redis; counts its hits and misses."""

    def __init__(self, client: redis.Redis, ttl_s: int) -> None:
        self._r, self._ttl = client, ttl_s

    def get(self, key: str) -> list[dict] | None:
        raw = self._r.get(keys.label_cache(key))
        self._r.hincrby(keys.METRICS, "cache_hits" if raw else "cache_misses", 1)
        return json.loads(raw) if raw else None

    def put(self, names: Iterable[str], labels: list[dict]) -> None:
        body = json.dumps(labels)
        pipe = self._r.pipeline(transaction=False)
        for name in names:
            pipe.set(keys.label_cache(name), body, ex=self._ttl)
        pipe.execute()

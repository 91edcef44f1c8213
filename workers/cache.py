"""The dedup cache: labels of identical content, kept in Redis with a TTL."""
import json
from collections.abc import Iterable

import redis

from visionfleet.checkpoints.keys import Keys


class RedisLabelCache:
    """A ``pipeline.labeller.LabelCache`` on Redis; counts its hits and misses."""

    def __init__(self, client: redis.Redis, ttl_s: int, namespace: str) -> None:
        self._r, self._ttl, self._keys = client, ttl_s, Keys(namespace)

    def get(self, key: str) -> list[dict] | None:
        raw = self._r.get(self._keys.label_cache(key))
        self._r.hincrby(self._keys.METRICS, "cache_hits" if raw else "cache_misses", 1)
        return json.loads(raw) if raw else None

    def put(self, names: Iterable[str], labels: list[dict]) -> None:
        body = json.dumps(labels)
        pipe = self._r.pipeline(transaction=False)
        for name in names:
            pipe.set(self._keys.label_cache(name), body, ex=self._ttl)
        pipe.execute()

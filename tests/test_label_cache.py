"""The dedup cache on a real Redis: labels under every name, hit and miss counts written with the puts."""
import uuid

import pytest
import redis

from tests.helpers import RedisServer
from visionfleet.workers.cache import RedisLabelCache

LABELS = [{"class_id": 281, "label": "tabby", "score": 0.9}]


@pytest.fixture
def cache(redis_url):
    namespace = f"t{uuid.uuid4().hex[:8]}"
    client = redis.Redis.from_url(redis_url)
    yield RedisLabelCache(client, 60, namespace), client, namespace


def counts(client, metrics: str) -> dict[str, int]:
    return {k.decode(): int(v) for k, v in client.hgetall(metrics).items()}


def test_labels_go_under_every_name_and_the_counts_with_the_next_put(cache):
    labels, client, namespace = cache
    metrics = f"{namespace}:metrics"
    assert labels.get("content:a") is None and labels.get("version:a") is None
    assert counts(client, metrics) == {}  # counted, not yet written: no round trip of its own
    labels.put([(("content:a", "version:a"), LABELS), ((), LABELS)])
    assert counts(client, metrics) == {"cache_misses": 2}
    assert labels.get("version:a") == LABELS and labels.get("content:a") == LABELS
    labels.put([])  # a batch of hits only: nothing to write but the counts
    assert counts(client, metrics) == {"cache_misses": 2, "cache_hits": 2}
    labels.put([])
    assert counts(client, metrics) == {"cache_misses": 2, "cache_hits": 2}  # each written once
    assert 0 < client.ttl(f"{namespace}:cache:content:a") <= 60


def test_a_put_that_meets_the_store_down_keeps_its_counts_for_the_next(tmp_path):
    server = RedisServer(tmp_path)
    try:
        client = redis.Redis.from_url(server.url)
        labels = RedisLabelCache(client, 60, "t")
        assert labels.get("content:a") is None
        server.shut_down_keeping_data()
        with pytest.raises(redis.ConnectionError):
            labels.put([(("content:a",), LABELS)])
        server.start()
        labels.put([(("content:a",), LABELS)])  # the caller tries the batch again once the fault passes
        assert counts(client, "t:metrics") == {"cache_misses": 1}
        assert labels.get("content:a") == LABELS
    finally:
        server.stop()

"""The store under test, SQLite and real Redis: the fixtures every store contract module (test_store_*.py)
imports, so each contract runs against both."""
import uuid
from dataclasses import dataclass

import pytest
import redis

from visionfleet.checkpoints import StateStore, open_store
from visionfleet.checkpoints.keys import Keys


@dataclass(frozen=True)
class Backend:
    """One store's state: a SQLite file, or a Redis database and a namespace of this test's own."""

    name: str  # "sqlite" or "redis"
    url: str
    namespace: str

    def open(self, job_ttl_s: float | None = None) -> StateStore:
        """A new store on the same state (as another process would open it)."""
        return open_store(self.url, job_ttl_s=job_ttl_s, namespace=self.namespace)

    @property
    def keys(self) -> Keys:
        return Keys(self.namespace)


@pytest.fixture(params=["sqlite", "redis"])
def backend(request, tmp_path):
    """Each test's own state; on Redis, its namespace's keys are deleted at its end."""
    namespace = f"storetest{uuid.uuid4().hex[:10]}"
    if request.param == "sqlite":
        yield Backend("sqlite", f"sqlite:///{tmp_path / 'state.db'}", namespace)
        return
    url = request.getfixturevalue("redis_url")
    yield Backend("redis", url, namespace)
    client = redis.Redis.from_url(url)
    left = list(client.scan_iter(match=f"{namespace}:*", count=1000))
    if left:
        client.delete(*left)


@pytest.fixture
def store(backend) -> StateStore:
    return backend.open()


"""Shared fixtures: real Redis, the local OSS server, real photos."""
import os
import uuid

import pytest
import redis

REDIS_URL = os.environ.get("VISIONFLEET_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture(scope="session")
def redis_url() -> str:
    try:
        redis.Redis.from_url(REDIS_URL).ping()
    except redis.ConnectionError as exc:
        pytest.fail(f"tests need Redis at {REDIS_URL} (.ci/run starts one): {exc}")
    return REDIS_URL


@pytest.fixture
def job_id() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"

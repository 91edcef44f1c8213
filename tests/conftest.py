"""Shared fixtures: real Redis, the local OSS server, real worker processes."""
import os
import uuid

import oss2
import pytest
import redis

from bench.samples import export
from tests.helpers import REPO, RedisServer, Workers, clean_env
from tests.oss_server import start_oss_server

REDIS_URL = os.environ.get("VISIONFLEET_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")

# Tests send traffic to loopback only: never poll the cloud metadata address.
os.environ["VISIONFLEET_SPOT_NOTICE_URL"] = "off"
# Workers serve no metrics port unless a test asks: many run at once, and one port would clash.
os.environ["VISIONFLEET_METRICS_PORT"] = "off"


@pytest.fixture(scope="session", autouse=True)
def model_cache(tmp_path_factory) -> str:
    """One model artifact cache for the whole run (exports are built once), never the user's own."""
    cache = str(tmp_path_factory.mktemp("model-cache"))
    os.environ["VISIONFLEET_MODEL_CACHE"] = cache
    yield cache
    del os.environ["VISIONFLEET_MODEL_CACHE"]


@pytest.fixture(scope="session")
def redis_url():
    """The machine's Redis (started by .ci/run when it is not running), a database the tests
    keep to; every key the run creates there is deleted at its end."""
    client = redis.Redis.from_url(REDIS_URL)
    try:
        before = set(client.scan_iter(count=1000))
    except redis.ConnectionError as exc:
        pytest.fail(f"tests need Redis at {REDIS_URL} (.ci/run starts one): {exc}")
    yield REDIS_URL
    created = set(client.scan_iter(count=1000)) - before
    if created:
        client.delete(*created)


@pytest.fixture(scope="session")
def private_redis(tmp_path_factory):
    """A redis-server of our own: a broker whose queues no one else touches."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def oss_server():
    server = start_oss_server()
    yield server
    server.stop()


@pytest.fixture
def oss_settings(oss_server, monkeypatch):
    """OSS variables for this process, pointing at the local server."""
    env = oss_env(oss_server)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    from visionfleet.pipeline.storage import _oss

    _oss.cache_clear()  # storage reads settings once per process
    yield env
    _oss.cache_clear()


def oss_env(server) -> dict:
    return {"OSS_ENDPOINT": server.endpoint, "OSS_ACCESS_KEY_ID": server.access_key_id,
            "OSS_ACCESS_KEY_SECRET": server.access_key_secret}


@pytest.fixture
def bucket(oss_server) -> oss2.Bucket:
    """A fresh bucket for one test."""
    b = oss2.Bucket(oss2.Auth(oss_server.access_key_id, oss_server.access_key_secret), oss_server.endpoint,
                    f"vf-{uuid.uuid4().hex[:12]}")
    b.create_bucket()
    yield b
    oss_server.clear_faults()  # a test that failed midway must not leave faults for the next


@pytest.fixture
def fleet_env(private_redis, oss_server, tmp_path) -> dict:
    """Environment of a fleet process: private Redis broker (emptied), local OSS."""
    redis.Redis.from_url(private_redis.url).flushdb()
    env = clean_env()
    env.update(oss_env(oss_server))
    env.update({"VISIONFLEET_BROKER_URL": private_redis.url, "VISIONFLEET_HOME": str(tmp_path / "home"),
                "VISIONFLEET_SPOT_NOTICE_URL": "off", "VISIONFLEET_METRICS_PORT": "off", "PYTHONPATH": str(REPO),
                "VISIONFLEET_MODEL_CACHE": os.environ["VISIONFLEET_MODEL_CACHE"]})
    return env


@pytest.fixture
def client(fleet_env, monkeypatch):
    """A VisionClient of this process on the fleet's broker (the online queue)."""
    from visionfleet.broker.celery_app import make_app
    from visionfleet.broker.client import VisionClient
    from visionfleet.broker.settings import BrokerSettings

    for key, value in fleet_env.items():
        if key.startswith(("VISIONFLEET_", "OSS_")):
            monkeypatch.setenv(key, value)
    return VisionClient(make_app(BrokerSettings.from_env()))


@pytest.fixture
def workers(fleet_env, tmp_path):
    """Factory of real worker processes, all stopped at teardown."""
    pool = Workers(fleet_env, tmp_path)
    yield pool
    pool.stop_all()


@pytest.fixture
def job_id() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def photos(tmp_path):
    """``tmp_path/photos``: scikit-image's bundled photos, the folder the README's demo labels."""
    export(tmp_path / "photos")
    return tmp_path / "photos"

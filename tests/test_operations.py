"""Operating a fleet with real parts: a worker's /metrics, /healthz and /readyz over HTTP,
`visionfleet health` and `visionfleet scale` against a real Redis and real worker processes."""
import json
import socket
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bench.e2e_bench import make_photos
from tests.helpers import free_port, relabel, visionfleet, wait_until
from visionfleet.checkpoints import open_store

pytestmark = pytest.mark.slow  # real worker processes and CLI subprocesses

SLOW = "tests.slow_model:build"
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def get(port: int, path: str) -> tuple[int, str]:
    """(status, body); 0 when nothing answers."""
    try:
        with _DIRECT.open(f"http://127.0.0.1:{port}{path}", timeout=5) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except (urllib.error.URLError, OSError):
        return 0, ""


def samples(port: int) -> dict[tuple, float]:
    """Every sample of one scrape: (name, sorted labels) -> value."""
    status, body = get(port, "/metrics")
    assert status == 200, body
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(body) for s in family.samples}


def bulk_images(scrape: dict) -> float:
    return sum(v for (name, labels), v in scrape.items()
               if name == "visionfleet_images_total" and ("queue", "bulk") in labels)


def serving(port: int) -> dict:
    return {"VISIONFLEET_METRICS_PORT": str(port), "VISIONFLEET_METRICS_ADDR": "127.0.0.1"}


def test_a_scrape_during_a_real_job_counts_every_image_once(fleet_env, workers, tmp_path):
    (tmp_path / "photos").mkdir()
    make_photos(tmp_path / "photos", 120, (320, 240))
    roots = {"VISIONFLEET_LOCAL_ROOTS": str(tmp_path)}
    port = free_port()
    workers.start(1, VISIONFLEET_COMMIT_EVERY="8", **roots, **serving(port))
    wait_until(lambda: get(port, "/readyz")[0] == 200, 120, "the worker to be ready")
    env = {**fleet_env, **roots}
    job_id = relabel(env, str(tmp_path / "photos"), "--output", str(tmp_path / "out"), "--shard-size", "40")
    store = open_store(env["VISIONFLEET_BROKER_URL"])
    during = []

    def ended():
        state = store.progress(job_id).state
        if state == "running":
            during.append(bulk_images(samples(port)))
        return state in ("succeeded", "failed")

    wait_until(ended, 240, "the job to end", every=0.05)
    assert store.progress(job_id).state == "succeeded"
    assert any(0 < n < 120 for n in during), during  # scraped while it ran, part way
    scrape = samples(port)
    assert bulk_images(scrape) == 120 == scrape[("visionfleet_images_total", (("queue", "bulk"), ("status", "ok")))]
    assert scrape[("visionfleet_commits_total", ())] >= 120 / 8
    for stage in ("fetch", "decode", "infer", "write", "commit"):
        assert scrape[("visionfleet_stage_seconds_count", (("stage", stage),))] > 0, stage
    assert scrape[("visionfleet_batch_size_sum", ())] == 120
    assert scrape[("visionfleet_processes_ready", ())] == 1
    assert ("visionfleet_queue_backlog", (("queue", "bulk"),)) in scrape  # the fleet's, read from Redis
    # No label names a job, an image or a worker: series stay few however many jobs run.
    assert not [key for key in scrape if any(job_id in value or "/" in value for _, value in key[1])]


def test_readyz_waits_for_the_model_and_turns_503_when_the_worker_drains(bucket, fleet_env, workers):
    for i, body in enumerate(make_jpegs(16)):
        bucket.put_object(f"slow/{i:02d}.jpg", body)
    env = {**fleet_env, "VISIONFLEET_MODELS": SLOW}
    port = free_port()
    worker = workers.start(1, VISIONFLEET_MODELS=SLOW, VISIONFLEET_MODEL=SLOW, VISIONFLEET_TEST_LOAD_S="4",
                           VISIONFLEET_TEST_PREDICT_S="1", **serving(port))[0]
    probe_env = {**env, **serving(port)}
    wait_until(lambda: get(port, "/healthz")[0] == 200, 60, "the worker to answer /healthz")
    status, why = get(port, "/readyz")
    assert (status, why.strip()) == (503, "0 of 1 worker processes have their model loaded")
    loading = visionfleet("health", "--ready", env=probe_env)
    assert loading.returncode == 1 and "model loaded" in loading.stderr
    wait_until(lambda: get(port, "/readyz")[0] == 200, 60, "the model to load")
    assert visionfleet("health", "--ready", env=probe_env).returncode == 0

    job_id = relabel(env, f"oss://{bucket.bucket_name}/slow/", "--output", f"oss://{bucket.bucket_name}/out/",
                     "--model", SLOW, "--shard-size", "4")
    store = open_store(env["VISIONFLEET_BROKER_URL"])
    wait_until(lambda: [w for w in store.workers() if w.get("job_id") == job_id], 60, "the worker to take a shard")
    with ThreadPoolExecutor(1) as pool:  # watch /readyz all through the drain, until the worker is gone
        watched = pool.submit(watch_until_gone, port)
        assert visionfleet("drain", "--all", env=env).returncode == 0
        assert worker.wait(timeout=60) == 0
        seen = watched.result(timeout=30)
    changes = [answer for i, answer in enumerate(seen) if i == 0 or answer != seen[i - 1]]
    assert changes == [(200, "ready\n"), (503, "draining\n"), (0, "")], changes


def watch_until_gone(port: int, timeout: float = 90) -> list[tuple[int, str]]:
    """Every answer of /readyz, 50 a second, until nothing answers."""
    deadline = time.monotonic() + timeout
    seen = [get(port, "/readyz")]
    while seen[-1][0] and time.monotonic() < deadline:
        time.sleep(0.02)
        seen.append(get(port, "/readyz"))
    return seen


def make_jpegs(count: int) -> list[bytes]:
    from tests.photos import distinct_jpegs

    return distinct_jpegs(count)


def test_scale_asks_for_a_worker_while_a_job_waits_and_for_the_minimum_once_it_is_done(bucket, fleet_env, workers):
    for i, body in enumerate(make_jpegs(8)):
        bucket.put_object(f"sc/{i}.jpg", body)
    job_id = relabel(fleet_env, f"oss://{bucket.bucket_name}/sc/", "--output", f"oss://{bucket.bucket_name}/out/",
                     "--shard-size", "4")

    def scale(**env: str) -> dict:
        result = visionfleet("scale", "--json", env={**fleet_env, **env})
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    waiting = scale()
    assert (waiting["desired_workers"], waiting["workers"], waiting["backlog_images"]) == (1, 0, 8), waiting
    assert waiting["queues"]["bulk"] == {"waiting": 2, "claimed": 0}
    assert scale(VISIONFLEET_MIN_WORKERS="3")["desired_workers"] == 3
    assert "no worker rate measured yet" in visionfleet("scale", env=fleet_env).stdout

    workers.start(1, VISIONFLEET_HEARTBEAT_S="0.5")
    store = open_store(fleet_env["VISIONFLEET_BROKER_URL"])
    wait_until(lambda: store.progress(job_id).state == "succeeded", 120, "the job to succeed")
    done = wait_until(lambda: (s := scale())["busy_workers"] == 0 and s, 30, "the worker to leave its shard")
    assert (done["desired_workers"], done["workers"], done["backlog_images"]) == (0, 1, 0), done
    assert scale(VISIONFLEET_MIN_WORKERS="2")["desired_workers"] == 2


def test_a_taken_metrics_port_or_a_bad_one_stops_the_worker_with_the_fix(fleet_env):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = visionfleet("worker", "-Q", "bulk", env={**fleet_env, **serving(port)}, timeout=60)
    assert result.returncode == 2
    assert f"cannot serve metrics on 127.0.0.1:{port}" in result.stderr
    assert "set VISIONFLEET_METRICS_PORT to a free port, or off" in result.stderr
    bad = visionfleet("worker", env={**fleet_env, "VISIONFLEET_METRICS_PORT": "99999"}, timeout=60)
    assert bad.returncode == 2 and "VISIONFLEET_METRICS_PORT='99999' is not a port" in bad.stderr


def test_health_and_scale_say_what_is_missing(tmp_path):
    off = visionfleet("health", env={"VISIONFLEET_METRICS_PORT": "off", "PATH": "/usr/bin:/bin"})
    assert off.returncode == 2 and "VISIONFLEET_METRICS_PORT is off" in off.stderr
    nobody = visionfleet("health", env={"VISIONFLEET_METRICS_PORT": str(free_port()), "PATH": "/usr/bin:/bin"})
    assert nobody.returncode == 1 and "no worker answers" in nobody.stderr
    embedded = visionfleet("scale", env={"VISIONFLEET_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert embedded.returncode == 2 and "Set VISIONFLEET_BROKER_URL=redis://" in embedded.stderr

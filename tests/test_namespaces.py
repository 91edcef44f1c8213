"""A fleet under a namespace other than the default: what operators read is true there too.

Queue depths, the autoscaling signal, online backpressure and a plain Celery producer
(``visionfleet.celery_config``) with work waiting and no worker; one count of workers (a
``visionfleet worker`` instance) in ``scale``, ``stats`` and ``status``; then two named worker
instances on one host, counted alike by ``scale``, ``stats`` and ``/metrics``, and drained
by the name given with ``-n``."""
import json
import socket
import subprocess
import sys
import time

import pytest
import redis
from celery import Celery

from tests.helpers import REPO, free_port, relabel, visionfleet, wait_until
from tests.photos import distinct_jpegs
from tests.test_operations import SLOW, samples, serving
from visionfleet.pipeline.errors import OverloadedError

NS = "staging"


@pytest.fixture
def staging(fleet_env, monkeypatch) -> dict:
    """The fleet's environment under the ``staging`` namespace, in the commands and in this process."""
    env = {**fleet_env, "VISIONFLEET_NAMESPACE": NS}
    for key, value in env.items():
        if key.startswith(("VISIONFLEET_", "OSS_")):
            monkeypatch.setenv(key, value)
    return env


def cli_json(env: dict, *args: str) -> dict:
    result = visionfleet(*args, "--json", env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_work_waiting_under_a_namespace_is_seen_by_scale_stats_and_backpressure(bucket, staging, fleet_env):
    for i in range(200):
        bucket.put_object(f"ns/{i:03d}.jpg", b"not looked at: no worker runs")
    job_id = relabel(staging, f"oss://{bucket.bucket_name}/ns/", "--output", f"oss://{bucket.bucket_name}/out/",
                     "--shard-size", "10")
    broker = redis.Redis.from_url(staging["VISIONFLEET_BROKER_URL"])
    assert broker.llen(f"{NS}:broker:{NS}.bulk") == 20  # where the shards are

    scale = cli_json(staging, "scale")
    assert (scale["backlog_images"], scale["queues"]["bulk"]) == (200, {"waiting": 20, "claimed": 0}), scale
    assert (scale["desired_workers"], scale["workers"], scale["unit"]) == (1, 0, "worker instance")
    stats = cli_json(staging, "stats")
    assert stats["queues"] == {f"{NS}.online": 0, f"{NS}.bulk": 20}, stats
    assert stats["workers"] == {"unit": "worker instance", "live": 0, "busy": 0, "hosts": 0, "processes": 0,
                                "names": []}
    assert "staging.bulk 20 waiting" in visionfleet("stats", env=staging).stdout
    assert json.loads(visionfleet("jobs", "--json", env=staging).stdout.splitlines()[0])["job_id"] == job_id
    assert cli_json(staging, "status", job_id)["state"] == "queued"
    default = cli_json(fleet_env, "scale")  # the default namespace sees none of it
    assert (default["backlog_images"], default["queues"]["bulk"]["waiting"]) == (0, 0), default

    # A plain Celery producer with the namespace's settings lands in the fleet's queue, and counts toward its bound.
    plain = Celery(broker=staging["VISIONFLEET_BROKER_URL"], backend=staging["VISIONFLEET_BROKER_URL"])
    import visionfleet as vf

    plain.conf.update(vf.celery_config(NS))
    plain.send_task("visionfleet.classify", args=[f"oss://{bucket.bucket_name}/ns/000.jpg"])
    assert broker.llen(f"{NS}:broker:{NS}.online") == 1
    client = vf.VisionClient(settings=vf.ClientSettings(max_backlog=5))
    for _ in range(4):
        client.submit(f"oss://{bucket.bucket_name}/ns/001.jpg")
    with pytest.raises(OverloadedError, match="5 online requests waiting, over the limit of 5"):
        client.submit(f"oss://{bucket.bucket_name}/ns/002.jpg")
    stats = cli_json(staging, "stats")
    assert (stats["queues"][f"{NS}.online"], stats["counters"]["online_rejected"]) == (5, 1), stats
    assert cli_json(staging, "scale")["online_backlog"] == 5
    refused = visionfleet("drain", "--worker", "w9@%h", env=staging)
    assert refused.returncode == 2 and "no worker answered" in refused.stderr


def start_instance(env: dict, name: str, tmp_path, **extra: str) -> subprocess.Popen:
    """``visionfleet worker -n NAME`` serving both queues (an online and a bulk Celery worker under it)."""
    log = open(tmp_path / f"{name.split('@')[0]}.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "visionfleet.cli", "worker", "-c", "1", "-n", name],
                            env={**env, "VISIONFLEET_THREADS": "1", **extra}, cwd=REPO, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    return proc


@pytest.mark.slow  # worker processes (with a stand-in model: they load in seconds)
def test_two_named_instances_on_one_host_count_two_and_drain_by_their_name(bucket, staging, workers, tmp_path):
    for i, body in enumerate(distinct_jpegs(16)):
        bucket.put_object(f"two/{i:02d}.jpg", body)
    env = {**staging, "VISIONFLEET_MODELS": SLOW, "VISIONFLEET_MODEL": SLOW, "VISIONFLEET_HEARTBEAT_S": "0.5",
           "VISIONFLEET_TEST_PREDICT_S": "0.5", "VISIONFLEET_COMMIT_EVERY": "1"}
    job_id = relabel(env, f"oss://{bucket.bucket_name}/two/", "--output", f"oss://{bucket.bucket_name}/out/",
                     "--model", SLOW, "--shard-size", "2")
    host, port = socket.gethostname(), free_port()
    workers.procs += [start_instance(env, "w1@%h", tmp_path, **serving(port)), start_instance(env, "w2@%h", tmp_path)]
    logs = lambda: "\n".join(p.read_text(errors="replace")[-2000:] for p in tmp_path.glob("w*.log"))  # noqa: E731

    def both_busy() -> dict | None:
        stats = cli_json(env, "stats")["workers"]
        return stats if stats["busy"] == 2 else None

    seen = wait_until(both_busy, 120, lambda: f"both instances on a shard; logs:\n{logs()}")
    assert (seen["live"], seen["hosts"], seen["processes"], seen["names"]) == (2, 1, 2, [f"w1@{host}", f"w2@{host}"])
    scale = cli_json(env, "scale")
    assert (scale["workers"], scale["busy_workers"]) == (2, 2), scale
    wait_until(lambda: samples(port).get(("visionfleet_workers", ())) == 2, 30, "/metrics to count 2 instances")
    assert 1 <= cli_json(env, "status", job_id)["worker_instances"] <= 2
    record = vf_classify(env, f"oss://{bucket.bucket_name}/two/00.jpg")
    assert record["status"] == "ok", record

    drained = visionfleet("drain", "--worker", f"w2@{host}", env=env)
    assert drained.returncode == 0, drained.stderr
    assert drained.stdout.split() == [f"bulk-w2@{host}:", "draining", f"online-w2@{host}:", "draining"]
    w1, w2 = workers.procs
    wait_until(lambda: w2.poll() is not None, 60, lambda: f"w2 to exit; logs:\n{logs()}")
    assert w1.poll() is None
    wait_until(lambda: cli_json(env, "stats")["workers"]["names"] == [f"w1@{host}"], 30, "stats to list w1 alone")
    assert cli_json(env, "scale")["workers"] == 1


def vf_classify(env: dict, uri: str) -> dict:
    """The online client under the namespace, as a shell uses it: ``visionfleet classify``."""
    result = visionfleet("classify", uri, "--timeout", "60", env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_scale_stats_and_status_count_worker_instances_alike(redis_url, job_id):
    """Beats of five processes: two instances on one host (two bulk processes each) and one elsewhere."""
    from visionfleet.broker.fleet import processes
    from visionfleet.broker.scaling import Fleet, Policy, decide
    from visionfleet.checkpoints import open_store
    from visionfleet.cli.online import worker_instances
    from visionfleet.cli.progress import look

    store = open_store(redis_url, namespace=f"t{job_id[-8:]}")
    store.create_job(job_id, {})
    beats = [("w1@vm", "vm", True), ("w1@vm", "vm", False), ("w2@vm", "vm", True), ("w2@vm", "vm", True),
             ("w3@other", "other", False)]
    for i, (instance, host, on_job) in enumerate(beats):
        store.beat(f"{job_id}-{i}", {"instance": instance, "host": host, "pidns": "pid:[1]", "pid": 100 + i,
                                     **({"job_id": job_id, "shard": i} if on_job else {})}, ttl_s=60)
    try:
        decision = decide(Fleet(0, 0, processes(store)), Policy(), time.time())
        counted = worker_instances(store.workers())
        assert (decision.workers, decision.busy_workers) == (counted["live"], counted["busy"]) == (3, 2)
        assert (counted["hosts"], counted["processes"], counted["names"]) == (2, 5, ["w1@vm", "w2@vm", "w3@other"])
        assert look(store, job_id).instances == 2
    finally:
        for i in range(len(beats)):
            store.forget(f"{job_id}-{i}")
        store.purge(job_id)

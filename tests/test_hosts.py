"""Machines of a fleet: two `visionfleet worker` commands with default settings on one machine both
start, each on a metrics port of its own and under Celery node names of their own, and both take
shards, on a Redis broker and on RabbitMQ; and a laptop's manifest, which only `relabel` reads, is
checked against what `relabel` may read, not the workers' folders."""
import json
import socket
import subprocess
import sys
import uuid

import amqp
import kombu
import pytest

from bench.e2e_bench import make_photos
from tests.helpers import REPO, free_port, read_output, stop_process, visionfleet, wait_for_job, wait_until
from tests.photos import KNOWN, photo_bytes
from tests.test_fleet import oss_reader
from tests.test_operations import get
from visionfleet.broker.planner import check_access
from visionfleet.pipeline.errors import ConfigError
from visionfleet.pipeline.job import JobSpec

RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672//"
SHARDS = 12


@pytest.fixture
def namespace():
    """A namespace of this test's own; on RabbitMQ, its queues and exchanges are deleted after it."""
    name = f"hosts{uuid.uuid4().hex[:8]}"
    yield name
    queues = [f"{name}.bulk", f"{name}.online"]
    exchanges = queues + [f"{name}.celeryev", f"{name}.celery.pidbox", f"reply.{name}.celery.pidbox"]
    with kombu.Connection(RABBITMQ_URL, connect_timeout=5) as conn:
        for kind, names in (("queue", queues), ("exchange", exchanges)):
            for each in names:
                channel = conn.channel()  # an error closes its channel
                try:
                    getattr(channel, f"{kind}_delete")(each)
                except amqp.exceptions.NotFound:
                    pass


def start_default_worker(env: dict, log_path) -> subprocess.Popen:
    """`visionfleet worker`, no option given: online and bulk, Celery's own node names left to us."""
    with open(log_path, "wb") as log:
        return subprocess.Popen([sys.executable, "-m", "visionfleet.cli", "worker"], env=env, cwd=REPO,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def events(log_path) -> list[dict]:
    found = []
    for line in log_path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                found.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    return found


def started(log_path) -> dict | None:
    return next((e for e in events(log_path) if e["event"] == "starting workers"), None)


@pytest.mark.slow
@pytest.mark.parametrize("broker", ["redis", "rabbitmq"])
def test_two_default_workers_on_one_host_both_serve(broker, namespace, bucket, fleet_env, private_redis, tmp_path):
    first = free_port()
    env = {**fleet_env, "VISIONFLEET_NAMESPACE": namespace, "VISIONFLEET_THREADS": "1",
           # the default range, moved to ports free here: tests may run beside a real worker on 9808
           "VISIONFLEET_METRICS_PORT": f"{first}-{first + 9}", "VISIONFLEET_METRICS_ADDR": "127.0.0.1"}
    if broker == "rabbitmq":
        env.update({"VISIONFLEET_BROKER_URL": RABBITMQ_URL, "VISIONFLEET_STATE_URL": private_redis.url})
    (tmp_path / "photos").mkdir()
    for path in make_photos(tmp_path / "photos", SHARDS, (160, 120)):
        bucket.put_object_from_file(f"in/{path.name}", str(path))
    logs = [tmp_path / f"host-worker-{i}.log" for i in range(2)]
    procs = [start_default_worker(env, log) for log in logs]
    try:
        wait_until(lambda: all(started(log) for log in logs), 60, "both workers to start")
        ports = [started(log)["metrics_port"] for log in logs]
        nodes = [started(log)["nodes"] for log in logs]
        assert ports[0] != ports[1] and set(ports) <= set(range(first, first + 10)), ports
        assert not set(nodes[0]) & set(nodes[1]), nodes
        for port, log in zip(ports, logs):
            wait_until(lambda: all(p.poll() is None for p in procs) and get(port, "/readyz")[0] == 200, 180,
                       f"the worker on {port} to be ready; {log.read_text()[-3000:]}")
        result = visionfleet("relabel", f"oss://{bucket.bucket_name}/in/", "-o", f"oss://{bucket.bucket_name}/out/",
                             "--shard-size", "1", "--wait", env=env, timeout=300)
        assert result.returncode == 0, result.stderr + "".join(log.read_text()[-3000:] for log in logs)
        shards = [{e["shard"] for e in events(log) if e["event"] == "commit"} for log in logs]
        assert all(shards) and len(shards[0] | shards[1]) == SHARDS, shards
        stats = json.loads(visionfleet("stats", "--json", env=env).stdout)
        assert {entry.rsplit(":", 1)[1] for entry in stats["metrics_ports"]} == {str(p) for p in ports}, stats
        assert all(p.poll() is None for p in procs)
    finally:
        for proc in procs:
            stop_process(proc)
    assert [p.returncode for p in procs] == [0, 0], "".join(log.read_text()[-3000:] for log in logs)


@pytest.mark.slow
def test_a_range_of_taken_ports_stops_the_worker_and_the_default_is_a_range(fleet_env, monkeypatch):
    from visionfleet.workers.exporter import ExporterSettings

    monkeypatch.delenv("VISIONFLEET_METRICS_PORT")
    assert list(ExporterSettings.from_env().ports) == list(range(9808, 9840))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        span = {"VISIONFLEET_METRICS_PORT": f"{port}-{port}", "VISIONFLEET_METRICS_ADDR": "127.0.0.1"}
        result = visionfleet("worker", "-Q", "bulk", env={**fleet_env, **span}, timeout=60)
    assert result.returncode == 2, result.stderr
    assert f"cannot serve metrics on 127.0.0.1:{port}-{port} (every port is taken)" in result.stderr


def test_a_fleet_job_may_read_a_local_manifest_without_the_workers_folders(bucket, oss_settings, tmp_path,
                                                                           monkeypatch):
    monkeypatch.delenv("VISIONFLEET_LOCAL_ROOTS", raising=False)
    manifest, out = tmp_path / "manifest.txt", f"oss://{bucket.bucket_name}/out/"
    manifest.write_text(f"oss://{bucket.bucket_name}/in/a.jpg\n")
    check_access(JobSpec(str(manifest), out), embedded=False)
    (tmp_path / "photos").mkdir()  # a folder is read by the workers: theirs to allow
    with pytest.raises(ConfigError, match="add its folder to VISIONFLEET_LOCAL_ROOTS"):
        check_access(JobSpec(str(tmp_path / "photos"), out), embedded=False)
    with pytest.raises(ConfigError, match="add its folder to VISIONFLEET_LOCAL_ROOTS"):  # the workers calibrate
        check_access(JobSpec(str(manifest), out, calibration=str(tmp_path / "photos")), embedded=False)


@pytest.mark.slow
def test_a_laptops_manifest_of_oss_uris_runs_on_a_fleet_and_its_uris_are_still_checked(bucket, fleet_env, workers,
                                                                                        tmp_path):
    for name in KNOWN:
        bucket.put_object(f"in/{name}", photo_bytes(name))
    manifest = tmp_path / "laptop" / "manifest.txt"
    manifest.parent.mkdir()
    manifest.write_text("".join(f"oss://{bucket.bucket_name}/in/{name}\n" for name in KNOWN) + "/etc/passwd.jpg\n")
    workers.start(1)
    result = visionfleet("relabel", str(manifest), "-o", f"oss://{bucket.bucket_name}/out/", env=fleet_env)
    assert result.returncode == 0, result.stderr
    job_id = result.stdout.split()[-1]
    assert wait_for_job(fleet_env, workers, job_id)["state"] == "succeeded"
    _, records = read_output(oss_reader(bucket), f"oss://{bucket.bucket_name}/out/{job_id}")
    by_uri = {r["uri"]: r for r in records}
    assert len(records) == len(KNOWN) + 1
    assert all(by_uri[f"oss://{bucket.bucket_name}/in/{name}"]["status"] == "ok" for name in KNOWN)
    refused = "/etc/passwd.jpg is outside the folders workers may use; add its folder to VISIONFLEET_LOCAL_ROOTS"
    assert by_uri["/etc/passwd.jpg"] == {"uri": "/etc/passwd.jpg", "status": "error", "error": refused, "labels": None,
                                         "model": "efficientnet_lite0", "model_version": "0.1.0", "fingerprint": None}

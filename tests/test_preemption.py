"""Preemption with real processes and real signals: SIGTERM, SIGKILL, spot
notices, a stalled worker, Redis lost mid-run, a shard that kills its worker.

Every test ends by checking the output contract: the parts listed in
``_SUCCESS.json`` hold every input exactly once.
"""
import http.server
import json
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from visionfleet.checkpoints import open_store
from visionfleet.checkpoints.keys import DEFAULT_NAMESPACE
from tests.helpers import (RedisServer, Workers, embedded_env, read_output, relabel, visionfleet, wait_for_job,
                           wait_until)
from tests.photos import distinct_jpegs, jpeg

pytestmark = pytest.mark.slow  # real worker processes, killed and restarted

# Small commits and batches, short leases: interruptions land mid-shard and
# recovery takes seconds, not the production minutes.
FAST = {"VISIONFLEET_COMMIT_EVERY": "16", "VISIONFLEET_MAX_BATCH_SIZE": "8", "VISIONFLEET_LEASE_TTL_S": "3",
        "VISIONFLEET_REDELIVER_AFTER_S": "4", "VISIONFLEET_DRAIN_DEADLINE_S": "15",
        "VISIONFLEET_MAX_TAKEOVERS": "2", "VISIONFLEET_HEARTBEAT_S": "0.2"}
REPORT = []  # (what, value): printed at the end for the closing note


@pytest.fixture(scope="module", autouse=True)
def report():
    yield
    print("\npreemption figures:", json.dumps(REPORT))


class Job:
    """A job over ``count`` images in a fresh bucket, run by the test's workers."""

    def __init__(self, bucket, env, count, shard_size, model=None, output_format="jsonl"):
        self.bucket, self.env, self.count = bucket, env, count
        images = distinct_jpegs(count)
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda i: bucket.put_object(f"in/{i:04d}.jpg", images[i]), range(count)))
        args = [f"oss://{bucket.bucket_name}/in/", "--output", f"oss://{bucket.bucket_name}/out/",
                "--shard-size", str(shard_size), "--format", output_format] + (["--model", model] if model else [])
        self.id = relabel(env, *args)
        self.root = f"oss://{bucket.bucket_name}/out/{self.id}"
        self.store = open_store(env.get("VISIONFLEET_STATE_URL") or env["VISIONFLEET_BROKER_URL"],
                                namespace=env.get("VISIONFLEET_NAMESPACE") or DEFAULT_NAMESPACE)  # the workers'

    def offset(self, shard=0) -> int:
        return self.store.checkpoint(self.id, shard).offset

    def wait_end(self, workers, timeout=240) -> dict:
        return wait_for_job(self.env, workers, self.id, timeout, workers_stay_up=False)  # these tests stop workers

    def read(self, uri) -> bytes:
        return self.bucket.get_object(uri.split("/", 3)[3]).read()

    def assert_exactly_once(self) -> dict:
        summary, records = read_output(self.read, self.root)
        uris = [r["uri"] for r in records]
        assert len(uris) == self.count == len(set(uris)) == summary["total"]
        assert set(uris) == {f"oss://{self.bucket.bucket_name}/in/{i:04d}.jpg" for i in range(self.count)}
        return summary

    def part_files(self) -> list[str]:
        prefix = f"out/{self.id}/part-"
        return sorted(o.key.rsplit("/", 1)[1] for o in self.bucket.list_objects_v2(prefix=prefix, max_keys=1000)
                      .object_list)

    def labelled_lines(self) -> int:
        """Records in every part file present, listed or not."""
        return sum(len(self.read(f"{self.root}/{p}").splitlines()) for p in self.part_files())


def part_start(name: str) -> int:
    return int(name.split("-")[2])


def test_sigterm_mid_shard_drains_within_deadline_and_nothing_is_redone(bucket, fleet_env, workers):
    (first,) = workers.start(1, **FAST)
    job = Job(bucket, fleet_env, 240, shard_size=240)
    wait_until(lambda: job.offset() >= 32, 120, "the first commits")
    sent = time.monotonic()
    first.send_signal(signal.SIGTERM)  # to the main process, as Docker, ECS and Kubernetes do
    first.wait(timeout=30)
    drain_s = time.monotonic() - sent
    REPORT.append(("sigterm_to_exit_s", round(drain_s, 2)))
    assert first.returncode == 0 and drain_s < 15
    drained_at = job.offset()
    assert 32 <= drained_at < 240
    workers.start(1, **FAST)
    assert job.wait_end(workers)["state"] == "succeeded"
    summary = job.assert_exactly_once()
    assert drained_at in {part_start(p) for p in summary["parts"]}  # resumed where the drain committed
    REPORT.append(("sigterm_images_redone", job.labelled_lines() - 240))
    assert job.labelled_lines() == 240  # the drain committed all it had labelled


def test_sigkill_resumes_from_the_checkpoint(bucket, fleet_env, workers):
    (first,) = workers.start(1, **FAST)
    job = Job(bucket, fleet_env, 240, shard_size=240)
    wait_until(lambda: job.offset() >= 32, 120, "the first commits")
    # What it has labelled and not committed, as its last beat (0.2 s ago at most) says: the work a kill loses.
    uncommitted = [w.get("labelled", 0) for w in job.store.workers() if w.get("job_id") == job.id]
    os.killpg(first.pid, signal.SIGKILL)  # the whole worker: the instance is gone
    first.wait()
    killed = time.monotonic()
    at_kill = job.offset()
    assert at_kill < 240
    workers.start(1, **FAST)
    wait_until(lambda: job.offset() > at_kill, 120, "another worker to resume the shard")
    REPORT.append(("sigkill_to_resumed_commit_s", round(time.monotonic() - killed, 2)))
    assert job.wait_end(workers)["state"] == "succeeded"
    summary = job.assert_exactly_once()
    assert at_kill in {part_start(p) for p in summary["parts"]}  # picked up at the last commit, not at 0
    # Re-done work is what the dead worker labelled after its last commit:
    # at most one commit interval (16) plus the batch in flight (8).
    assert len(uncommitted) == 1 and 0 <= uncommitted[0] <= 16 + 8, uncommitted
    REPORT.append(("sigkill_images_redone", uncommitted[0]))


class SpotMetadata(http.server.ThreadingHTTPServer):
    """The ECS metadata path on loopback: 404 until a notice is set."""

    def __init__(self):
        self.notice, self.polls = None, 0
        spot = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                spot.polls += 1
                body = (spot.notice or "").encode()
                self.send_response(200 if spot.notice else 404)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}/latest/meta-data/instance/spot/termination-time"


@pytest.fixture
def spot():
    server = SpotMetadata()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_spot_notice_drains_the_worker(bucket, fleet_env, workers, spot):
    (first,) = workers.start(1, VISIONFLEET_SPOT_NOTICE_URL=spot.url, VISIONFLEET_SPOT_POLL_S="0.2", **FAST)
    job = Job(bucket, fleet_env, 240, shard_size=240)
    wait_until(lambda: job.offset() >= 32 and spot.polls > 0, 120, "commits while the notice answers 404")
    assert first.poll() is None  # 404 means no notice
    spot.notice = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 300))  # Alibaba: ~5 minutes
    noticed = time.monotonic()
    first.wait(timeout=30)
    REPORT.append(("spot_notice_to_exit_s", round(time.monotonic() - noticed, 2)))
    assert first.returncode == 0
    logged = [json.loads(line) for line in workers.logs(tail=1_000_000).splitlines()
              if '"spot termination notice"' in line]
    assert logged and 290 <= logged[0]["seconds_left"] <= 301, logged  # how long the drain had
    assert job.offset() < 240
    workers.start(1, **FAST)
    assert job.wait_end(workers)["state"] == "succeeded"
    job.assert_exactly_once()
    assert job.labelled_lines() == 240
    ledger = job.store.ledger(job.id)  # the run report's account of it
    assert (ledger["drains"], ledger["spot_notices"], ledger["redone"]) == (1, 1, 0)


def test_stalled_worker_late_commit_is_refused(bucket, fleet_env, workers):
    (stalled,) = workers.start(1, **FAST)
    job = Job(bucket, fleet_env, 240, shard_size=240)
    wait_until(lambda: job.offset() >= 16, 120, "the first commit")
    os.killpg(stalled.pid, signal.SIGSTOP)  # stalled past its lease, alive
    try:
        workers.start(1, **FAST)
        assert job.wait_end(workers)["state"] == "succeeded"
    finally:
        os.killpg(stalled.pid, signal.SIGCONT)
    log = workers.log_dir / "worker-0.log"
    wait_until(lambda: "commit refused" in log.read_text(errors="replace"), 60, "the stalled worker's late commit")
    job.assert_exactly_once()
    summary = json.loads(job.read(f"{job.root}/_SUCCESS.json"))
    wait_until(lambda: job.part_files() == sorted(summary["parts"]), 30, "the refused part to be deleted")


def test_redis_lost_mid_run_then_resume(bucket, fleet_env, tmp_path):
    redis_server = RedisServer(tmp_path)
    env = {**fleet_env, "VISIONFLEET_BROKER_URL": redis_server.url}
    pool = Workers(env, tmp_path)
    try:
        pool.start(1, **FAST)
        job = Job(bucket, env, 192, shard_size=24)
        wait_until(lambda: job.store.progress(job.id).shards_done >= 2, 120, "two shards to finish")
        finished = {i for i in range(8) if job.store.checkpoint(job.id, i).done}
        parts_before = set(job.store.parts(job.id))
        redis_server.crash_and_restart_empty()  # queue and job state gone
        result = visionfleet("resume", job.id, "--output", f"oss://{bucket.bucket_name}/out/", env=env)
        assert result.returncode == 0, result.stderr
        assert job.wait_end(pool)["state"] == "succeeded"  # the worker reconnected by itself
        summary = job.assert_exactly_once()
        for part in summary["parts"]:
            if int(part.split("-")[1]) in finished:
                assert part in parts_before, f"finished shard redone: {part}"
        REPORT.append(("redis_loss_shards_kept", len(finished)))
    finally:
        pool.stop_all()
        redis_server.stop()


def test_poison_shard_fails_with_its_reason_after_bounded_tries(bucket, fleet_env, workers):
    red = np.zeros((96, 96, 3), dtype=np.uint8)
    red[..., 0] = 255
    bucket.put_object("in/9999.jpg", jpeg(red, quality=100))
    allowed = {"VISIONFLEET_MODELS": "tests.poison_model:build"}  # on the workers, and where relabel checks
    workers.start(1, **FAST, **allowed)
    job = Job(bucket, {**fleet_env, **allowed}, 8, shard_size=4, model="tests.poison_model:build")
    status = job.wait_end(workers, timeout=180)
    assert status["state"] == "failed"
    assert list(status["failed_shards"]) == ["2"]
    assert "died or stalled 2 times" in status["failed_shards"]["2"] and "9999.jpg" in status["failed_shards"]["2"]
    assert status["done"] == 8  # the healthy shards all committed
    assert workers.procs[0].poll() is None  # Celery replaced its dead pool child each time


def test_operator_drain_command(bucket, fleet_env, workers):
    import socket

    (first,) = workers.start(1, **FAST)
    name = f"test0-{os.getpid()}@{socket.gethostname()}"
    job = Job(bucket, fleet_env, 160, shard_size=160)
    wait_until(lambda: job.offset() >= 16, 120, "the first commit")
    result = visionfleet("drain", "--worker", name, env=fleet_env)
    assert result.returncode == 0, result.stderr
    assert f"{name}: draining" in result.stdout
    first.wait(timeout=30)
    assert first.returncode == 0 and job.offset() < 160
    workers.start(1, **FAST)
    assert job.wait_end(workers)["state"] == "succeeded"
    job.assert_exactly_once()
    assert job.labelled_lines() == 160


def test_drain_needs_a_target(fleet_env):
    result = visionfleet("drain", env=fleet_env)
    assert result.returncode == 2 and "--worker NAME" in result.stderr



def test_an_idle_embedded_worker_stops_cleanly_on_sigterm(tmp_path):
    # The embedded transport's loop notices the shutdown seconds later: time enough
    # for a pool child killed by the drain signal to be noticed and replaced.
    pool = Workers(embedded_env(tmp_path), tmp_path)
    try:
        (worker,) = pool.start(1)
        wait_until(lambda: "worker process ready" in pool.logs(), 60, "the pool child to load its model")
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0, pool.logs()
    finally:
        pool.stop_all()
    log = pool.logs(tail=100_000)
    assert log.count("worker process ready") == 1 and "exitcode" not in log, log

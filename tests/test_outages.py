"""Faults that pass, with real processes: the state store stopped for 90 s, the output disk
full (a real tmpfs) then freed, or remounted read-only then writable, a job with failed shards resumed. Each job must end
``succeeded`` with every input exactly once, and no shard may fail for a fault that passed."""
import contextlib
import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import REPO, RedisServer, Workers, embedded_env, read_output, stop_process, visionfleet, wait_until
from tests.photos import distinct_jpegs
from tests.test_preemption import FAST, Job
from visionfleet.checkpoints import open_store

SLOW = {"VISIONFLEET_MODELS": "tests.slow_model:build", "VISIONFLEET_TEST_PREDICT_S": "0.5",
        "VISIONFLEET_MAX_BATCH_SIZE": "4"}  # a model that takes its time: the fault lands mid-job
PATIENT = {"VISIONFLEET_FAULT_BACKOFF_MAX_S": "2"}  # retries every 2 s at most: a passed fault is seen at once
# Four commits per shard of 16: after the first, each worker still has commits to make, so the outage
# meets a shard in the middle. With one commit per shard, both workers could sit between shards for
# the whole outage, waiting on the broker, and never meet the store down.
MID_SHARD = {"VISIONFLEET_MAX_BATCH_SIZE": "4", "VISIONFLEET_COMMIT_EVERY": "4"}
OUTAGE_S = 90


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs: the output disk the test fills and frees."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=True)


def fill(disk: Path) -> Path:
    """Fill ``disk`` to the last byte; the filler file, to delete when the disk should have room again."""
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as f:
        for size in (1 << 16, 1 << 12, 1):
            with contextlib.suppress(OSError):
                while True:
                    f.write(b"\0" * size)
    with pytest.raises(OSError) as full:
        (disk / "probe").write_bytes(b"x")
    assert full.value.errno == errno.ENOSPC
    return filler


def photos(folder: Path, count: int) -> None:
    folder.mkdir()
    for i, data in enumerate(distinct_jpegs(count)):
        (folder / f"{i:03d}.jpg").write_bytes(data)


def status(job_id: str, env: dict) -> dict:
    result = visionfleet("status", job_id, "--json", env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def waiting_on(job_id: str, env: dict, words: str) -> dict | None:
    view = status(job_id, env)
    return view if any(words in w["reason"] for w in view["waiting"]) else None


def assert_local_exactly_once(root: Path, inputs: Path) -> dict:
    summary, records = read_output(lambda uri: Path(uri).read_bytes(), str(root))
    uris = [r["uri"] for r in records]
    assert len(uris) == len(set(uris)) == summary["total"]
    assert set(uris) == {str(p) for p in inputs.iterdir()}
    return summary


@pytest.mark.slow
@pytest.mark.parametrize("output_format", ["jsonl", "parquet"])  # parquet: a shard's last commit rewrites its parts
def test_the_store_stopped_for_90s_then_back_the_job_ends_by_itself(bucket, fleet_env, tmp_path, output_format):
    server = RedisServer(tmp_path)  # the fleet's broker and state store both
    env = {**fleet_env, "VISIONFLEET_BROKER_URL": server.url, **SLOW}
    pool = Workers(env, tmp_path)
    try:
        pool.start(2, **{**FAST, **PATIENT, **MID_SHARD})
        job = Job(bucket, env, 48, shard_size=16, model="tests.slow_model:build", output_format=output_format)
        wait_until(lambda: job.store.progress(job.id).done >= 4, 120, f"the first commit; logs:\n{pool.logs()}")
        assert job.store.progress(job.id).done <= 24, "the outage must land mid-job"
        server.shut_down_keeping_data()
        stopped = time.monotonic()
        time.sleep(OUTAGE_S)  # the outage itself: nothing to wait for, only time to let pass
        server.start()
        outage_s = time.monotonic() - stopped
        assert job.wait_end(pool, timeout=300)["state"] == "succeeded", pool.logs()
        job.assert_exactly_once()
        progress = job.store.progress(job.id)
        assert progress.failed_shards == {} and progress.done == 48
        logs = pool.logs(tail=1_000_000)
        said = "\n".join(line for line in logs.splitlines() if "fault" in line or "unreachable" in line)
        for words in ("waiting out a fault", "state store unreachable", "fault passed"):
            assert words in logs, f"{words!r} not logged; the fault lines:\n{said or '(none)'}"
        assert all(p.poll() is None for p in pool.procs)  # no worker gave up
        print(f"\nstore outage of {outage_s:.0f}s: job succeeded, nothing failed")
    finally:
        pool.stop_all()
        server.stop()


@pytest.mark.slow
@pytest.mark.parametrize("output_format", ["jsonl", "parquet"])
def test_a_full_output_disk_in_a_fleet_is_named_by_status_and_waited_out(fleet_env, workers, tmp_path, small_disk,
                                                                         output_format):
    photos(tmp_path / "in", 24)
    env = {**fleet_env, **SLOW, "VISIONFLEET_LOCAL_ROOTS": f"{tmp_path / 'in'}{os.pathsep}{small_disk}"}
    result = visionfleet("relabel", str(tmp_path / "in"), "--output", str(small_disk), "--shard-size", "8",
                         "--model", "tests.slow_model:build", "--format", output_format, env=env)
    assert result.returncode == 0, result.stderr
    job_id = result.stdout.strip().splitlines()[-1]
    filler = fill(small_disk)  # planned, nothing labelled yet: the first write meets a full disk
    workers.env = env
    workers.start(2, **FAST, **PATIENT)
    view = wait_until(lambda: waiting_on(job_id, env, "output disk full"), 120,
                      f"status to name the full disk; logs:\n{workers.logs()}")
    assert view["state"] == "running" and view["failed_shards"] == {}
    line = visionfleet("status", job_id, env=env).stdout
    assert "running" in line and "waiting: output disk full (No space left on device" in line, line
    print(f"\nstatus while the disk is full: {line}")
    wait_until(lambda: len(status(job_id, env)["waiting"]) == 2, 60, "both workers to wait")
    drained = workers.procs[0]
    drained.send_signal(signal.SIGTERM)  # a drain during the wait: its shard goes back to the queue
    assert drained.wait(timeout=30) == 0
    filler.unlink()
    wait_until(lambda: status(job_id, env)["state"] in ("succeeded", "failed"), 180,
               f"the job to end; logs:\n{workers.logs()}")
    final = status(job_id, env)
    assert (final["state"], final["failed_shards"], final["waiting"]) == ("succeeded", {}, [])
    assert_local_exactly_once(small_disk / job_id, tmp_path / "in")
    assert "told to drain while waiting out a fault" in workers.logs(tail=1_000_000)


@pytest.mark.slow
def test_an_output_remounted_read_only_is_waited_out(fleet_env, workers, tmp_path, small_disk):
    photos(tmp_path / "in", 8)
    env = {**fleet_env, "VISIONFLEET_LOCAL_ROOTS": f"{tmp_path / 'in'}{os.pathsep}{small_disk}"}
    result = visionfleet("relabel", str(tmp_path / "in"), "--output", str(small_disk), "--shard-size", "4", env=env)
    assert result.returncode == 0, result.stderr
    job_id = result.stdout.strip().splitlines()[-1]
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    try:
        workers.env = env
        workers.start(1, **FAST, **PATIENT)
        view = wait_until(lambda: waiting_on(job_id, env, "output disk read-only"), 120,
                          f"status to name the read-only output; logs:\n{workers.logs()}")
        assert view["state"] == "running" and view["failed_shards"] == {}
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(small_disk)], check=True)
    wait_until(lambda: status(job_id, env)["state"] in ("succeeded", "failed"), 120,
               f"the job to end; logs:\n{workers.logs()}")
    assert status(job_id, env)["state"] == "succeeded"
    assert_local_exactly_once(small_disk / job_id, tmp_path / "in")


@pytest.mark.slow
def test_a_full_output_disk_in_the_embedded_default_is_waited_out(tmp_path, small_disk):
    photos(tmp_path / "in", 16)
    env = {**embedded_env(tmp_path), **SLOW, **PATIENT, "VISIONFLEET_COMMIT_EVERY": "4"}
    command = subprocess.Popen(
        [sys.executable, "-m", "visionfleet.cli", "relabel", str(tmp_path / "in"), "--output", str(small_disk),
         "--shard-size", "8", "--model", "tests.slow_model:build"],
        env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        store = open_store(f"sqlite:///{tmp_path / 'home' / 'state.db'}")
        planned = wait_until(lambda: [p for p in store.jobs(5) if p.planned], 60, "the job to be planned")
        job_id = planned[0].job_id
        filler = fill(small_disk)
        view = wait_until(lambda: waiting_on(job_id, env, "output disk full"), 120, "status to name the full disk")
        assert view["state"] == "running" and command.poll() is None
        filler.unlink()
        out, err = command.communicate(timeout=180)
    finally:
        stop_process(command)
    assert command.returncode == 0, err
    assert out.strip().splitlines()[-1] == job_id
    summary = assert_local_exactly_once(small_disk / job_id, tmp_path / "in")
    assert summary["total"] == 16


@pytest.mark.slow
def test_resume_retries_the_failed_shards_and_finishes_the_job(bucket, fleet_env, workers):
    job = Job(bucket, fleet_env, 24, shard_size=8)
    # Shard 1 failed as a worker of an earlier version failed it when Redis went away for a while.
    lease = job.store.acquire(job.id, 1, "old-worker", ttl_s=60)
    assert job.store.fail_shard(job.id, 1, lease.token, "ConnectionError: Error 111 connecting to 127.0.0.1:6391")
    workers.start(1, **FAST)
    assert job.wait_end(workers)["state"] == "failed"
    dest = f"oss://{bucket.bucket_name}/out/"
    kept = visionfleet("resume", job.id, "--output", dest, "--only-unfinished", env=fleet_env)
    assert kept.returncode == 0 and "0 shards enqueued again" in kept.stderr, kept.stderr
    assert "1 failed shard not retried" in kept.stderr
    assert job.store.progress(job.id).state == "failed"
    result = visionfleet("resume", job.id, "--output", dest, "--wait", env=fleet_env)
    assert result.returncode == 0, result.stderr
    assert "1 shard enqueued again (1 failed before)" in result.stderr
    final = job.wait_end(workers)
    assert (final["state"], final["failed_shards"]) == ("succeeded", {})
    job.assert_exactly_once()

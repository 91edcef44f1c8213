"""A worker killed outright, with real processes: its shard moves in seconds at default settings, and
nothing it started stays behind, however it was killed.

Default heartbeats (5 s, 3 missed = dead) and the default 300 s broker redelivery, unless a test says.
"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import kombu
import pytest
import redis

from tests.helpers import REPO, RedisServer, Workers, embedded_env, linked_photos, wait_until
from tests.test_fleet import RABBITMQ_URL
from tests.test_interrupts import committed
from tests.test_preemption import FAST, Job, part_start
from visionfleet.checkpoints import open_store
from visionfleet.workers.heartbeat import proc_stat

pytestmark = pytest.mark.slow

SMALL = {"VISIONFLEET_COMMIT_EVERY": "16", "VISIONFLEET_MAX_BATCH_SIZE": "8"}  # commits land mid-shard
TAKEN_OVER_WITHIN_S = 90
GONE_WITHIN_S = 45
SLOW = "tests.slow_model:build"
# A model batch of 8 takes 0.25 s: a 240-image shard lasts long enough to be killed part way, on any broker.
PACED = {"VISIONFLEET_MODELS": SLOW, "VISIONFLEET_MODEL": SLOW, "VISIONFLEET_TEST_PREDICT_S": "0.25"}
REPORT = []  # (what, value): printed at the end for the closing note


@pytest.fixture(scope="module", autouse=True)
def report():
    yield
    print("\ntakeover figures:", json.dumps(REPORT))


def group_of(pid: int) -> int:
    return int(proc_stat(pid)[2])


def holder(job: Job) -> dict | None:
    found = [w for w in job.store.workers() if w.get("job_id") == job.id]
    return found[0] if found else None


def tree(pid: int) -> set[int]:
    """``pid`` and every process below it, now."""
    below: dict[int, list[int]] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        fields = proc_stat(entry.name)
        if fields:
            below.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        found.add(todo[-1])
        todo += below.get(todo.pop(), [])
    return found


def alive(pids: set[int]) -> set[int]:
    """Those still running (a zombie has exited: only its entry waits to be collected)."""
    return {p for p in pids if (fields := proc_stat(p)) and fields[0] != "Z"}


def pair_ready(workers: Workers) -> bool:
    """Both Celery workers of a ``visionfleet worker`` are up, and the bulk one's pool process has its model."""
    logs = workers.logs(tail=100_000)
    return logs.count(' ready."') == 2 and "worker process ready" in logs


def wait_gone(pids: set[int], workers: Workers) -> float:
    """Seconds until every one of ``pids`` has exited; those left at the deadline are killed, and the test fails."""
    started = time.monotonic()
    try:
        wait_until(lambda: not alive(pids), GONE_WITHIN_S, f"every process to exit; left: {alive(pids)}; logs:\n"
                   f"{workers.logs()}", every=0.2)
    finally:
        for pid in alive(pids):
            os.kill(pid, signal.SIGKILL)
    return time.monotonic() - started


@pytest.fixture(params=["redis", "rabbitmq"])
def broker_env(request, fleet_env, private_redis):
    """A fleet's environment on either broker; on RabbitMQ, in a namespace of its own (this machine's RabbitMQ
    is shared), whose queues and exchanges are deleted after the test."""
    if request.param == "redis":
        yield fleet_env
        return
    namespace = f"takeover{os.getpid()}"  # the test's Job opens the store in it too
    yield {**fleet_env, "VISIONFLEET_BROKER_URL": RABBITMQ_URL, "VISIONFLEET_STATE_URL": private_redis.url,
           "VISIONFLEET_NAMESPACE": namespace}
    with kombu.Connection(RABBITMQ_URL, connect_timeout=5) as conn:
        channel = conn.channel()
        for name in (f"{namespace}.bulk", f"{namespace}.online"):
            channel.queue_delete(name)
        for name in (f"{namespace}.bulk", f"{namespace}.online", f"{namespace}.celeryev",
                     f"{namespace}.celery.pidbox", f"reply.{namespace}.celery.pidbox"):
            channel.exchange_delete(name)


def test_a_worker_killed_outright_has_its_shard_taken_over_within_90s_at_default_settings(
        bucket, broker_env, workers, request):
    workers.env = broker_env
    first, second = workers.start(2, **SMALL, **PACED)
    wait_until(lambda: workers.logs(tail=100_000).count("worker process ready") == 2, 120, "both models to load")
    job = Job(bucket, {**broker_env, **PACED}, 240, shard_size=240, model=SLOW)
    held = wait_until(lambda: job.offset() >= 16 and holder(job), 120, "the first commit")
    victim, other = (first, second) if first.pid == group_of(held["pid"]) else (second, first)
    os.killpg(victim.pid, signal.SIGKILL)  # every process of the worker: the machine is gone
    victim.wait()
    killed, at_kill = time.monotonic(), job.offset()
    assert at_kill < 240
    wait_until(lambda: [w for w in job.store.workers() if w.get("job_id") == job.id and w["pid"] in tree(other.pid)],
               TAKEN_OVER_WITHIN_S, f"the other worker to take the shard; logs:\n{workers.logs()}")
    broker = request.node.callspec.params["broker_env"]
    REPORT.append((f"{broker}_default_kill_to_takeover_s", round(time.monotonic() - killed, 1)))
    wait_until(lambda: job.offset() > at_kill, 60, "the new holder's first commit")
    REPORT.append((f"{broker}_default_kill_to_resumed_commit_s", round(time.monotonic() - killed, 1)))
    assert job.wait_end(workers)["state"] == "succeeded"
    summary = job.assert_exactly_once()
    assert at_kill in {part_start(p) for p in summary["parts"]}  # from the last commit, not from 0
    assert job.store.ledger(job.id)["takeovers"] == 1


def broker_messages(url: str) -> int:
    """Messages anywhere in the Redis broker: queued, or held by a worker (prefetched, or waiting for a countdown)."""
    r = redis.Redis.from_url(url)
    return r.llen("bulk") + r.hlen("unacked")


def test_the_messages_of_a_taken_over_shard_all_end_with_the_job(bucket, fleet_env, workers):
    """The shard's message offered again and the dead worker's own, given back by the broker: both end."""
    first, second = workers.start(2, **FAST)
    wait_until(lambda: workers.logs(tail=100_000).count("worker process ready") == 2, 120, "both models to load")
    job = Job(bucket, fleet_env, 240, shard_size=240)
    wait_until(lambda: job.offset() >= 16, 120, "the first commit")
    victim = next(p for p in (first, second) if p.pid == group_of(holder(job)["pid"]))
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait()
    assert job.wait_end(workers)["state"] == "succeeded"
    job.assert_exactly_once()
    wait_until(lambda: broker_messages(fleet_env["VISIONFLEET_BROKER_URL"]) == 0, 60,
               f"every message of the shard to end; logs:\n{workers.logs()}")


def test_kill_9_of_the_main_process_of_a_worker_leaves_nothing_behind_and_its_shard_moves_on(
        bucket, fleet_env, workers):
    (main,) = workers.start(1, queues="online,bulk", **SMALL)  # a supervisor, online and bulk workers under it
    wait_until(lambda: pair_ready(workers), 120, "the online worker and the bulk pool process to be ready")
    job = Job(bucket, fleet_env, 240, shard_size=240)
    wait_until(lambda: job.offset() >= 16, 120, "the first commit")
    everyone = tree(main.pid)
    assert len(everyone) >= 4, everyone  # the supervisor, online, bulk and its pool process
    os.kill(main.pid, signal.SIGKILL)  # the main process only: the others are in their own sessions
    main.wait()
    REPORT.append(("kill_main_to_all_gone_s", round(wait_gone(everyone, workers), 1)))
    workers.start(1, **SMALL)
    assert job.wait_end(workers)["state"] == "succeeded"
    job.assert_exactly_once()


def test_kill_9_of_a_bulk_workers_main_process_mid_shard_ends_its_pool_process(bucket, fleet_env, workers):
    """Celery's prefork sets PDEATHSIG in its pool processes: this keeps it so."""
    (main,) = workers.start(1, **SMALL)  # Celery's own main process, the pool process under it
    job = Job(bucket, fleet_env, 240, shard_size=240)
    wait_until(lambda: job.offset() >= 16, 120, "the first commit")
    everyone = tree(main.pid)
    assert len(everyone) == 2, everyone
    os.kill(main.pid, signal.SIGKILL)
    main.wait()
    REPORT.append(("kill_celery_main_to_pool_gone_s", round(wait_gone(everyone, workers), 1)))
    workers.start(1, **SMALL)
    assert job.wait_end(workers)["state"] == "succeeded"
    job.assert_exactly_once()


def test_kill_9_of_a_workers_group_while_it_retries_a_broker_that_is_gone_leaves_nothing_behind(
        fleet_env, redis_url, tmp_path):
    """As reported: the online worker, in its own session, retried a broker that was gone, for 15 minutes."""
    broker = RedisServer(tmp_path)
    broker.stop()  # gone before the workers ever reach it; the job state stays reachable
    pool = Workers({**fleet_env, "VISIONFLEET_BROKER_URL": broker.url, "VISIONFLEET_STATE_URL": redis_url}, tmp_path)
    try:
        (main,) = pool.start(1, queues="online,bulk")
        wait_until(lambda: (logs := pool.logs(tail=100_000)).count("Cannot connect to") >= 2
                   and "worker process ready" in logs, 120, "both workers to retry the broker")
        everyone = tree(main.pid)
        assert len(everyone) >= 4, everyone
        os.killpg(main.pid, signal.SIGKILL)
        main.wait()
        REPORT.append(("kill_group_broker_gone_to_all_gone_s", round(wait_gone(everyone, pool), 1)))
    finally:
        pool.stop_all()


def part_way(store, worker: dict) -> bool:
    """The worker's shard has a commit and is not done."""
    checkpoint = store.checkpoint(worker["job_id"], worker["shard"])
    return 0 < checkpoint.offset and not checkpoint.done


def test_an_embedded_run_finishes_the_shard_of_a_worker_killed_outright(tmp_path):
    """The filesystem transport hands a message over by deleting its file: the killed worker's is gone for good,
    and before the sweep the run waited forever for its shard."""
    photos = linked_photos(tmp_path, 480)
    env = {**embedded_env(tmp_path), **SMALL}
    run = subprocess.Popen([sys.executable, "-m", "visionfleet.cli", "relabel", str(photos), "--output",
                            str(tmp_path / "labels"), "--shard-size", "60", "--workers", "2"], env=env, cwd=REPO,
                           text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    store = None
    try:
        wait_until(lambda: committed(tmp_path) > 0, 120, "a first commit")  # the state file's schema is made
        store = open_store(f"sqlite:///{tmp_path / 'home' / 'state.db'}")
        busy = wait_until(lambda: [w for w in store.workers() if w.get("job_id") and part_way(store, w)], 120,
                          "a commit part way into a shard")
        os.killpg(group_of(busy[0]["pid"]), signal.SIGKILL)  # that worker, every process of it
        out, err = run.communicate(timeout=240)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.communicate()
    assert run.returncode == 0, err
    job_id = out.strip().splitlines()[-1]
    root = tmp_path / "labels" / job_id
    summary = json.loads((root / "_SUCCESS.json").read_text())
    uris = [json.loads(line)["uri"] for part in summary["parts"] for line in (root / part).read_text().splitlines()]
    assert sorted(uris) == sorted(str(p) for p in photos.iterdir())  # each exactly once
    assert store.ledger(job_id)["takeovers"] == 1

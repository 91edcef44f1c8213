"""Infrastructure faults in one process: which failures are faults, how a worker waits one out
(no real time: the clock and sleep are injected), and a shard that meets one and still ends
exactly once. Real SQLite store and local storage; the fault is injected where it strikes.
(Real processes against a stopped Redis and a full disk: test_outages.py.)"""
import errno
import logging
import sqlite3

import pytest
import redis

from tests.photos import distinct_jpegs
from tests.test_shard_runner import job, runner  # noqa: F401 (fixture)
from visionfleet.checkpoints.shard_leases import Checkpoint
from visionfleet.pipeline.errors import RetryableError
from visionfleet.pipeline.faults import infrastructure
from visionfleet.pipeline.job import Job
from visionfleet.pipeline.storage.local import LocalStorage
from visionfleet.workers.fault_wait import FaultWait, Interrupted
from visionfleet.workers.heartbeat import Activity
from visionfleet.workers.settings import WorkerSettings
from visionfleet.workers.shard_runner import Outcome


def test_what_is_a_fault_and_what_is_not(tmp_path):
    full = OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "out" / "job" / "part-1.jsonl"))
    assert infrastructure(full, str(tmp_path / "out")).reason.startswith("output disk full (No space left")
    assert infrastructure(full).reason.startswith("disk full")
    assert infrastructure(OSError(errno.EROFS, "Read-only file system")).kind == "disk"
    assert infrastructure(redis.ConnectionError("Error 111 connecting to 127.0.0.1:6391.")).kind == "store"
    locked = sqlite3.connect(":memory:")
    try:
        locked.execute("select nope")
    except sqlite3.OperationalError as exc:
        assert infrastructure(exc) is None  # a wrong statement is a bug, not a fault
    assert infrastructure(RetryableError("OSS still failing after 6 tries: 503")).kind == "storage"
    for bug in (ValueError("x"), KeyError("y"), MemoryError(), OSError(errno.ENOENT, "gone")):
        assert infrastructure(bug) is None


class Clock:
    """Time that moves only when slept through."""

    def __init__(self):
        self.now, self.slept = 0.0, []

    def sleep(self, seconds):
        self.slept.append(seconds)
        self.now += seconds


def waiter(clock, stop=lambda: False, backoff_max_s=8.0, log_every_s=60.0):
    settings = WorkerSettings(fault_backoff_max_s=backoff_max_s, fault_log_every_s=log_every_s)
    activity = Activity()
    return FaultWait(activity, settings, should_stop=stop, clock=lambda: clock.now, sleep=clock.sleep,
                     wall=lambda: 1_000_000 + clock.now, jitter=lambda: 1.0), activity


def test_a_wait_backs_off_to_its_bound_says_why_and_ends_when_the_fault_passes(caplog):
    clock = Clock()
    faults, activity = waiter(clock)
    seen = []

    def step():
        if len(seen) < 40:  # the fault lasts 40 tries (minutes): there is no limit on how long
            seen.append(activity.as_info().get("waiting"))
            raise redis.ConnectionError("Error 111 connecting to 127.0.0.1:6391. Connection refused.")
        return "went through"

    with caplog.at_level(logging.INFO):
        assert faults.ride_out(step, job_id="j", shard=3) == "went through"
    pauses = [faults.backoff_s(i) for i in range(40)]
    assert pauses[:5] == [0.5, 1.0, 2.0, 4.0, 8.0] and max(pauses) == 8.0  # bounded
    assert seen[1] == {"reason": "state store unreachable (Error 111 connecting to 127.0.0.1:6391. Connection "
                                 "refused.)", "since": 1_000_000}
    assert activity.waiting is None and "waiting" not in activity.as_info()  # passed: the beat says so
    waits = [r for r in caplog.records if r.getMessage() == "waiting out a fault"]
    assert 3 <= len(waits) <= 1 + clock.now // 60 + 1  # once when it starts, then once a minute
    assert any(r.getMessage() == "fault passed: carrying on" for r in caplog.records)


def test_jitter_spreads_the_pauses_within_their_upper_half():
    clock = Clock()
    settings = WorkerSettings(fault_backoff_max_s=30.0)
    low = FaultWait(Activity(), settings, should_stop=lambda: False, jitter=lambda: 0.0)
    assert low.backoff_s(10) == 15.0
    faults, _ = waiter(clock, backoff_max_s=30.0)
    assert faults.backoff_s(10) == 30.0
    short_lease = FaultWait(Activity(), WorkerSettings(fault_backoff_max_s=30.0, lease_ttl_s=6.0),
                            should_stop=lambda: False, jitter=lambda: 1.0)
    assert short_lease.backoff_s(10) == 2.0  # renewed three times a lease


def test_a_drain_ends_the_wait_and_a_bug_is_not_waited_for():
    clock = Clock()
    faults, activity = waiter(clock, stop=lambda: clock.now > 3)
    with pytest.raises(Interrupted):
        faults.ride_out(lambda: (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space left on device")),
                        job_id="j", shard=0)
    assert activity.waiting is None and clock.now < 5
    with pytest.raises(ValueError):
        faults.ride_out(lambda: (_ for _ in ()).throw(ValueError("a bug")), job_id="j", shard=0)
    assert clock.now < 5  # no pause for it


class FlakyStore:
    """The real store, except that its commits fail with a lost connection ``fails`` times; with
    ``after_applying`` the commit goes through first and only its reply is lost."""

    def __init__(self, store, fails: int, after_applying: bool = False):
        self._store, self.fails, self.after_applying = store, fails, after_applying

    def __getattr__(self, name):
        return getattr(self._store, name)

    def commit(self, *args, **kwargs):
        if self.fails and kwargs.get("part"):
            self.fails -= 1
            if self.after_applying:
                self._store.commit(*args, **kwargs)
            raise redis.ConnectionError("Error 111 connecting to 127.0.0.1:6391. Connection refused.")
        return self._store.commit(*args, **kwargs)


def no_time(run):
    clock = Clock()
    run.faults = FaultWait(run.activity, run.settings, should_stop=lambda: False, clock=lambda: clock.now,
                           sleep=clock.sleep)
    return clock


def exactly_once(store, job_id, root):
    lines = [line for p in root.glob("part-*.jsonl") for line in p.read_text().splitlines()]
    p = store.progress(job_id)
    assert (p.state, p.ok, p.failed_shards) == ("succeeded", 20, {})
    assert len(lines) == 20 and len(set(lines)) == 20


@pytest.mark.parametrize("after_applying", [False, True], ids=["refused", "reply-lost"])
def test_a_store_that_goes_away_mid_shard_is_waited_out_and_counted_once(job, after_applying):  # noqa: F811
    store, job_id, root = job
    flaky = FlakyStore(store, fails=5, after_applying=after_applying)
    run = runner(flaky)
    clock = no_time(run)
    assert run.run(Job.from_dict(store.job_meta(job_id)), 0) is Outcome.DONE
    assert flaky.fails == 0 and clock.now >= sum(run.faults.backoff_s(i) / 2 for i in range(5))
    exactly_once(store, job_id, root)


def test_a_full_output_disk_is_waited_out_holding_the_lease(job, monkeypatch):  # noqa: F811
    store, job_id, root = job
    write = LocalStorage.write
    full = [4]

    def write_unless_full(self, uri, data):
        if "part-" in uri and full[0]:
            full[0] -= 1
            raise OSError(errno.ENOSPC, "No space left on device", uri)
        return write(self, uri, data)

    monkeypatch.setattr(LocalStorage, "write", write_unless_full)
    run = runner(store)
    clock = no_time(run)
    held = []
    sleep = clock.sleep

    def look_while_waiting(seconds):
        held.append((run.activity.as_info()["waiting"]["reason"], store.acquire(job_id, 0, "thief", ttl_s=60)))
        sleep(seconds)

    clock.sleep = look_while_waiting
    run.faults._sleep = look_while_waiting
    assert run.run(Job.from_dict(store.job_meta(job_id)), 0) is Outcome.DONE
    assert full == [0] and held and all(lease is None for _, lease in held)  # no one could take it meanwhile
    assert held[0][0].startswith("output disk full (No space left on device: ")
    exactly_once(store, job_id, root)


def test_a_bug_still_fails_its_shard_recorded_before_the_output_is_touched(job, monkeypatch):  # noqa: F811
    store, job_id, root = job

    def broken(self, uri, data):
        raise RuntimeError("a bug in the writer")

    monkeypatch.setattr(LocalStorage, "write", broken)
    assert runner(store).run(Job.from_dict(store.job_meta(job_id)), 0) is Outcome.FAILED
    p = store.progress(job_id)
    assert p.state == "failed" and "RuntimeError: a bug in the writer" in p.failed_shards[0]
    assert store.checkpoint(job_id, 0) == Checkpoint(failed=p.failed_shards[0])


def test_a_wait_left_for_another_reason_no_longer_says_it_waits():
    clock = Clock()
    faults, activity = waiter(clock)

    def lose_the_lease():
        raise LookupError("lease lost")

    with pytest.raises(LookupError):
        faults.ride_out(lambda: (_ for _ in ()).throw(OSError(errno.EROFS, "Read-only file system")),
                        job_id="j", shard=0, between=lose_the_lease)
    assert activity.waiting is None and "waiting" not in activity.as_info()


def test_one_oss_object_that_keeps_failing_is_its_error_record_and_a_failing_bucket_is_a_fault(
        oss_server, oss_settings, bucket, monkeypatch):
    from tests.test_labeller import CountingModel
    from visionfleet.pipeline.labeller import Labeller, LoadSettings
    from visionfleet.pipeline.storage import _oss

    monkeypatch.setenv("VISIONFLEET_OSS_MAX_ATTEMPTS", "2")
    _oss.cache_clear()
    uris = []
    for i, data in enumerate(distinct_jpegs(3)):
        bucket.put_object(f"in/{i}.jpg", data)
        uris.append(f"oss://{bucket.bucket_name}/in/{i}.jpg")
    labeller = Labeller(CountingModel(max_batch_size=4), LoadSettings(io_threads=2))
    try:
        oss_server.inject_fault(f"/{bucket.bucket_name}/in/1.jpg", 503, count=100)
        records = list(labeller.label(uris, 1))
        assert [r["status"] for r in records] == ["ok", "error", "ok"]
        assert "OSS still failing after 2 tries: 503" in records[1]["error"]
        oss_server.clear_faults()
        oss_server.inject_fault(f"/{bucket.bucket_name}", 503, count=1000)  # every call to the bucket
        with pytest.raises(RetryableError) as failing:
            list(labeller.label(uris, 1))
        assert infrastructure(failing.value).kind == "storage"
    finally:
        oss_server.clear_faults()
        labeller.close()

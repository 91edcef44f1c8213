"""The job book's contract (``checkpoints.job_book.JobBook``), on SQLite and on Redis."""
import contextlib
import sqlite3
import time

import pytest
import redis

from tests.helpers import wait_until

from visionfleet.checkpoints import open_store
from visionfleet.checkpoints.shard_leases import Checkpoint

pytest_plugins = ["tests.stores"]  # the store fixtures: SQLite and Redis


def test_new_job_is_queued_then_running_once_a_shard_is_leased(store, job_id):
    store.create_job(job_id, {"model": "m"})
    assert store.job_meta(job_id) == {"model": "m"}
    assert store.progress(job_id).state == "queued"
    assert store.acquire(job_id, 0, "w1", ttl_s=60) is not None
    assert store.progress(job_id).state == "running"


def test_unknown_job(store):
    assert store.job_meta("nope-never") is None
    assert store.progress("nope-never") is None


def test_final_state_sticks(store, job_id):
    store.create_job(job_id, {})
    store.acquire(job_id, 0, "w1", ttl_s=60)
    store.set_state(job_id, "failed", "because")
    p = store.progress(job_id)
    assert (p.state, p.reason) == ("failed", "because")


def test_a_watchers_pause_ends_when_the_job_state_is_set_where_the_store_can_tell(backend, job_id):
    """Redis tells (pub/sub), so a waiting command ends with the job; SQLite can only sleep out the pause."""
    store, other = backend.open(), backend.open()  # the worker that ends the job is elsewhere
    store.create_job(job_id, {})
    with store.state_changes(job_id) as pause:
        start = time.monotonic()
        pause(0.05)  # nothing happened: the whole pause
        assert time.monotonic() - start >= 0.05
        other.set_state(job_id, "succeeded")
        start = time.monotonic()
        pause(0.05 if backend.name == "sqlite" else 30)
        assert time.monotonic() - start < 5


def test_jobs_lists_the_newest_first_and_purge_removes_all_of_one(store, job_id):
    for n, suffix in enumerate(("a", "b", "c")):
        store.create_job(f"{job_id}-{suffix}", {"model": "m", "created_at": 4e9 + n})  # newer than any other
    store.set_planned(f"{job_id}-b", total=2, shards=1)
    lease = store.acquire(f"{job_id}-b", 0, "w1", ttl_s=60)
    assert store.commit(f"{job_id}-b", 0, lease.token, offset=2, ok=2, errors=0, part="p", done=True, ttl_s=60)
    assert [p.job_id for p in store.jobs(2)] == [f"{job_id}-c", f"{job_id}-b"]
    store.purge(f"{job_id}-b")
    assert store.progress(f"{job_id}-b") is None and store.checkpoint(f"{job_id}-b", 0) == Checkpoint()
    assert store.parts(f"{job_id}-b") == []
    assert [p.job_id for p in store.jobs(2)] == [f"{job_id}-c", f"{job_id}-a"]
    for suffix in ("a", "c"):
        store.purge(f"{job_id}-{suffix}")


def test_an_ended_job_expires_after_its_ttl_and_a_running_one_does_not(backend, job_id):
    store = backend.open(job_ttl_s=1)
    for name in ("ended", "running"):
        store.create_job(f"{job_id}-{name}", {"model": "m"})
        store.set_planned(f"{job_id}-{name}", total=1, shards=1)
        store.acquire(f"{job_id}-{name}", 0, "w1", ttl_s=60)
    store.set_state(f"{job_id}-ended", "succeeded")

    def expired() -> bool:
        listed = {p.job_id for p in store.jobs(1000)}  # SQLite drops expired jobs here
        return store.progress(f"{job_id}-ended") is None and f"{job_id}-ended" not in listed

    wait_until(expired, 10, "the ended job to expire")
    assert store.checkpoint(f"{job_id}-ended", 0) == Checkpoint()
    assert store.progress(f"{job_id}-running").state == "running"
    store.purge(f"{job_id}-running")


class _CtrlCAfterBegin:
    """The store's SQLite connection, with a Ctrl-C landing just after the next BEGIN has run."""

    def __init__(self, db):
        self._db = db

    def __getattr__(self, name):
        return getattr(self._db, name)

    def execute(self, sql, *args):
        result = self._db.execute(sql, *args)
        if sql.startswith("BEGIN"):
            raise KeyboardInterrupt
        return result


def test_a_ctrl_c_just_after_a_transaction_begins_leaves_the_sqlite_store_usable(tmp_path, job_id):
    """CI once saw it: the interrupted call's BEGIN stayed open, and every later call failed
    with 'cannot start a transaction within a transaction'."""
    store = open_store(f"sqlite:///{tmp_path / 'state.db'}")
    store.create_job(job_id, {})
    real, store._db = store._db, _CtrlCAfterBegin(store._db)
    with pytest.raises(KeyboardInterrupt):
        store.workers()
    store._db = real
    assert store.workers() == [] and store.progress(job_id).state == "queued"


def test_a_purged_job_leaves_a_tombstone_until_it_is_created_again(backend, job_id):
    store = backend.open()
    store.create_job(job_id, {"model": "m"})
    assert store.purged_at(job_id) is None
    before = time.time()
    store.purge(job_id)
    assert store.progress(job_id) is None and job_id not in {p.job_id for p in store.jobs(1000)}
    assert before - 1 <= store.purged_at(job_id) <= time.time() + 1
    assert backend.open().purged_at(job_id) == store.purged_at(job_id)  # as another process sees it
    store.create_job(job_id, {"model": "m"})  # `resume` rebuilds it from DEST
    assert store.purged_at(job_id) is None
    store.purge(job_id)


def test_a_tombstone_expires(backend, job_id):
    store = backend.open()
    store.tombstone_ttl_s = 1
    store.create_job(job_id, {})
    store.purge(job_id)
    assert store.purged_at(job_id) is not None
    wait_until(lambda: store.purged_at(job_id) is None, 10, "the tombstone to expire")
    store.jobs(10)  # SQLite's housekeeping: expired tombstones are deleted, not only hidden
    if backend.name == "sqlite":
        with contextlib.closing(sqlite3.connect(backend.url.removeprefix("sqlite:///"))) as db:
            assert db.execute("SELECT COUNT(*) FROM purged").fetchone() == (0,)


def test_an_interrupted_job_keeps_its_state_marked_until_the_mark_is_cleared(backend, job_id):
    store = backend.open(job_ttl_s=1)
    store.create_job(job_id, {})
    store.set_planned(job_id, total=2, shards=1)
    store.acquire(job_id, 0, "w1", ttl_s=60)
    store.set_state(job_id, "interrupted", "interrupted by Ctrl-C")
    p = store.progress(job_id)
    assert (p.state, p.interrupted, p.label, p.reason) == ("running", True, "interrupted", "interrupted by Ctrl-C")
    assert p.as_dict()["state"] == "running" and p.as_dict()["interrupted"] is True
    store.clear_state(job_id)  # resumed
    p = store.progress(job_id)
    assert (p.state, p.interrupted, p.label, p.reason) == ("running", False, "running", None)
    store.purge(job_id)


def test_a_cleared_final_state_lets_the_job_run_again_and_be_kept(backend, job_id):
    store = backend.open(job_ttl_s=600)
    store.create_job(job_id, {})
    store.set_planned(job_id, total=2, shards=1)
    store.acquire(job_id, 0, "w1", ttl_s=60)
    store.set_state(job_id, "cancelled", "cancelled by `visionfleet cancel`")
    store.clear_state(job_id)  # `resume --force`
    p = store.progress(job_id)
    assert (p.state, p.reason) == ("running", None)
    if backend.name == "redis":  # no expiry left on it
        assert redis.Redis.from_url(backend.url).ttl(backend.keys.job(job_id)) == -1
    else:
        with contextlib.closing(sqlite3.connect(backend.url.removeprefix("sqlite:///"))) as db:
            assert db.execute("SELECT expires_at FROM jobs WHERE job_id = ?", (job_id,)).fetchone() == (None,)
    store.purge(job_id)

"""One contract, two real stores: SQLite (embedded) and Redis (fleet)."""
import time

import pytest

from tests.helpers import wait_until

from visionfleet.checkpoints import open_store
from visionfleet.checkpoints.state import Checkpoint


@pytest.fixture(params=["sqlite", "redis"])
def store_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    return request.getfixturevalue("redis_url")


@pytest.fixture
def store(store_url):
    return open_store(store_url)


def commit(store, job_id, lease, offset, ok=0, errors=0, part=None, done=False) -> bool:
    return store.commit(job_id, 0, lease.token, offset=offset, ok=ok, errors=errors, part=part, done=done, ttl_s=60)


def test_new_job_is_queued_then_running_once_a_shard_is_leased(store, job_id):
    store.create_job(job_id, {"model": "m"})
    assert store.job_meta(job_id) == {"model": "m"}
    assert store.progress(job_id).state == "queued"
    assert store.acquire(job_id, 0, "w1", ttl_s=60) is not None
    assert store.progress(job_id).state == "running"


def test_unknown_job(store):
    assert store.job_meta("nope-never") is None
    assert store.progress("nope-never") is None


def test_lease_is_exclusive_until_it_expires(store, job_id):
    store.create_job(job_id, {})
    first = store.acquire(job_id, 0, "w1", ttl_s=60)
    assert store.acquire(job_id, 0, "w2", ttl_s=60) is None
    again = store.acquire(job_id, 0, "w1", ttl_s=60)  # the owner may re-take it, with a new token
    assert again.token != first.token and again.takeovers == 0
    assert store.acquire(job_id, 1, "w2", ttl_s=60) is not None  # other shards are free
    store.acquire(job_id, 2, "w1", ttl_s=0)
    taken = store.acquire(job_id, 2, "w2", ttl_s=60)  # expired: taken over
    assert taken is not None and taken.takeovers == 1


def test_commits_move_checkpoint_and_counters(store, job_id):
    store.create_job(job_id, {})
    store.set_planned(job_id, total=5, shards=1)
    lease = store.acquire(job_id, 0, "w1", ttl_s=60)
    assert commit(store, job_id, lease, 3, ok=2, errors=1, part="p1")
    assert store.checkpoint(job_id, 0) == Checkpoint(offset=3, ok=2, errors=1, parts=["p1"])
    assert not store.progress(job_id).complete
    assert commit(store, job_id, lease, 5, ok=2, part="p0", done=True)
    p = store.progress(job_id)
    assert (p.ok, p.errors, p.done, p.shards_done, p.complete) == (4, 1, 5, 1, True)
    assert store.checkpoint(job_id, 0) == Checkpoint(offset=5, ok=4, errors=1, parts=["p1", "p0"], done=True)
    assert store.parts(job_id) == ["p0", "p1"]


def test_stale_token_commit_is_refused_and_changes_nothing(store, job_id):
    store.create_job(job_id, {})
    old = store.acquire(job_id, 0, "w1", ttl_s=0)
    new = store.acquire(job_id, 0, "w2", ttl_s=60)
    assert not commit(store, job_id, old, 9, ok=9, part="stale", done=True)
    assert store.checkpoint(job_id, 0) == Checkpoint()
    assert store.parts(job_id) == [] and store.progress(job_id).ok == 0
    assert commit(store, job_id, new, 9, ok=9, part="fresh", done=True)


def test_done_shard_takes_no_more_commits(store, job_id):
    store.create_job(job_id, {})
    lease = store.acquire(job_id, 0, "w1", ttl_s=60)
    assert commit(store, job_id, lease, 1, ok=1, part="a", done=True)
    assert not commit(store, job_id, lease, 1, ok=1, part="b", done=True)
    assert store.progress(job_id).ok == 1


def test_takeovers_count_deaths_and_progress_resets_them(store, job_id):
    store.create_job(job_id, {})
    assert store.acquire(job_id, 0, "w1", ttl_s=0).takeovers == 0
    assert store.acquire(job_id, 0, "w2", ttl_s=0).takeovers == 1
    lease = store.acquire(job_id, 0, "w3", ttl_s=60)
    assert lease.takeovers == 2
    assert commit(store, job_id, lease, 0)  # no progress: count kept
    store.release(job_id, 0, lease.token)   # a clean hand-back is no death
    lease = store.acquire(job_id, 0, "w4", ttl_s=0)
    assert lease.takeovers == 2
    assert store.commit(job_id, 0, lease.token, offset=4, ok=4, errors=0, part=None, done=False, ttl_s=0)
    assert store.acquire(job_id, 0, "w5", ttl_s=60).takeovers == 1  # reset by progress, then w4 "died"


def test_failed_shard_is_reported_and_completes_the_job(store, job_id):
    store.create_job(job_id, {})
    store.set_planned(job_id, total=2, shards=2)
    t0 = store.acquire(job_id, 0, "w1", ttl_s=60)
    t1 = store.acquire(job_id, 1, "w1", ttl_s=60)
    assert commit(store, job_id, t0, 1, ok=1, part="a", done=True)
    assert store.fail_shard(job_id, 1, t1.token, "boom")
    p = store.progress(job_id)
    assert p.failed_shards == {1: "boom"} and p.complete
    assert store.checkpoint(job_id, 1).failed == "boom"


def test_release_frees_the_lease(store, job_id):
    store.create_job(job_id, {})
    lease = store.acquire(job_id, 0, "w1", ttl_s=60)
    store.release(job_id, 0, lease.token)
    assert store.acquire(job_id, 0, "w2", ttl_s=60).takeovers == 0


def test_restore_rebuilds_a_lost_job(store, job_id):
    store.create_job(job_id, {"x": 1})
    store.set_planned(job_id, total=7, shards=3)
    store.restore_shard(job_id, 0, Checkpoint(offset=3, ok=2, errors=1, parts=["a", "b"], done=True))
    store.restore_shard(job_id, 1, Checkpoint(offset=2, ok=2, parts=["c"]))
    p = store.progress(job_id)
    assert (p.ok, p.errors, p.shards_done) == (4, 1, 1)
    assert store.parts(job_id) == ["a", "b", "c"]
    assert store.checkpoint(job_id, 1) == Checkpoint(offset=2, ok=2, parts=["c"])
    lease = store.acquire(job_id, 1, "w1", ttl_s=60)
    assert lease.takeovers == 0
    assert store.commit(job_id, 1, lease.token, offset=4, ok=2, errors=0, part="d", done=True, ttl_s=60)
    assert store.checkpoint(job_id, 1).parts == ["c", "d"]


def test_final_state_sticks(store, job_id):
    store.create_job(job_id, {})
    store.acquire(job_id, 0, "w1", ttl_s=60)
    store.set_state(job_id, "failed", "because")
    p = store.progress(job_id)
    assert (p.state, p.reason) == ("failed", "because")


def test_a_watchers_pause_ends_when_the_job_state_is_set_where_the_store_can_tell(store_url, job_id):
    """Redis tells (pub/sub), so a waiting command ends with the job; SQLite can only sleep out the pause."""
    store, other = open_store(store_url), open_store(store_url)  # the worker that ends the job is elsewhere
    store.create_job(job_id, {})
    with store.state_changes(job_id) as pause:
        start = time.monotonic()
        pause(0.05)  # nothing happened: the whole pause
        assert time.monotonic() - start >= 0.05
        other.set_state(job_id, "succeeded")
        start = time.monotonic()
        pause(0.05 if store_url.startswith("sqlite") else 30)
        assert time.monotonic() - start < 5


def test_a_holder_whose_beats_lapse_loses_its_lease_before_the_lease_ends(store, job_id):
    store.create_job(job_id, {})
    lease = store.acquire(job_id, 0, f"{job_id}-w1", ttl_s=60)
    store.beat(f"{job_id}-w1", {"job_id": job_id, "shard": 0, "token": lease.token}, ttl_s=60)
    assert store.acquire(job_id, 0, f"{job_id}-w2", ttl_s=60) is None  # beating: alive
    store.beat(f"{job_id}-w1", {"job_id": job_id, "shard": 0, "token": lease.token}, ttl_s=0)
    taken = store.acquire(job_id, 0, f"{job_id}-w2", ttl_s=60)  # beats lapsed: dead, though its lease runs
    assert taken is not None and taken.takeovers == 1
    # The new holder is judged by its own beats (none yet: by its lease), not by the last holder's.
    assert store.acquire(job_id, 0, f"{job_id}-w3", ttl_s=60) is None
    store.forget(f"{job_id}-w1")


def test_beats_show_live_workers_and_a_forgotten_one_frees_its_lease_at_once(store, job_id):
    store.create_job(job_id, {})
    w1, w2, idle = f"{job_id}-w1", f"{job_id}-w2", f"{job_id}-idle"
    lease = store.acquire(job_id, 0, w1, ttl_s=60)
    store.beat(w1, {"job_id": job_id, "shard": 0, "token": lease.token, "labelled": 7, "host": "h"}, ttl_s=60)
    store.beat(idle, {"host": "h"}, ttl_s=60)
    store.beat(f"{job_id}-gone", {"host": "h"}, ttl_s=0)
    live = {w["owner"]: w for w in store.workers() if w["owner"].startswith(job_id)}
    assert sorted(live) == sorted([w1, idle])
    assert (live[w1]["job_id"], live[w1]["shard"], live[w1]["labelled"]) == (job_id, 0, 7)
    assert live[w1]["seen_at"] <= live[w1]["alive_until"]
    assert store.progress(job_id).seen_at is not None
    store.forget(w1)
    assert w1 not in {w["owner"] for w in store.workers()}
    taken = store.acquire(job_id, 0, w2, ttl_s=60)
    assert taken is not None and taken.takeovers == 1
    store.forget(idle)
    assert not [w for w in store.workers() if w["owner"].startswith(job_id)]


def sweep(store, job_id, grace_s=60.0) -> list[tuple[str, int]]:
    """What one sweep for dead holders offers again, of this job."""
    offered = []
    store.reoffer_orphans(lambda job, shard: offered.append((job, shard)), grace_s=grace_s, job_id=job_id)
    return offered


def test_a_dead_holders_shard_is_offered_again_once(store, job_id):
    store.create_job(job_id, {})
    w1 = f"{job_id}-w1"
    lease = store.acquire(job_id, 0, w1, ttl_s=60)
    store.beat(w1, {"job_id": job_id, "shard": 0, "token": lease.token}, ttl_s=60)
    assert sweep(store, job_id) == []  # beating: alive
    store.beat(w1, {"job_id": job_id, "shard": 0, "token": lease.token}, ttl_s=0)  # its beats stop
    assert sweep(store, job_id) == [(job_id, 0)]
    assert sweep(store, job_id, grace_s=0) == []  # offered: its record is gone, nobody offers it twice
    assert w1 not in {w["owner"] for w in store.workers()}
    assert store.acquire(job_id, 0, f"{job_id}-w2", ttl_s=60).takeovers == 1


def test_a_sweep_that_dies_before_it_offers_leaves_the_shard_to_the_next_after_its_grace(store, job_id):
    store.create_job(job_id, {})
    lease = store.acquire(job_id, 0, f"{job_id}-w1", ttl_s=60)
    store.beat(f"{job_id}-w1", {"job_id": job_id, "shard": 0, "token": lease.token}, ttl_s=0)

    def broker_down(job, shard):
        raise ConnectionError("broker down")

    with pytest.raises(ConnectionError):
        store.reoffer_orphans(broker_down, grace_s=0.5, job_id=job_id)
    assert sweep(store, job_id) == []  # claimed by the first sweep, for its grace
    assert wait_until(lambda: sweep(store, job_id), 10, "the claim to run out") == [(job_id, 0)]


def test_nothing_is_offered_for_a_shard_its_dead_holder_no_longer_holds(store, job_id):
    store.create_job(job_id, {})
    store.set_planned(job_id, total=2, shards=3)
    holders = {i: (f"{job_id}-w{i}", store.acquire(job_id, i, f"{job_id}-w{i}", ttl_s=60)) for i in range(3)}
    for i, (owner, lease) in holders.items():
        store.beat(owner, {"job_id": job_id, "shard": i, "token": lease.token}, ttl_s=0)
    assert store.acquire(job_id, 0, f"{job_id}-new", ttl_s=60).takeovers == 1  # taken over already
    store.release(job_id, 1, holders[1][1].token)  # handed back (a drain whose worker then died)
    assert store.commit(job_id, 2, holders[2][1].token, offset=2, ok=2, errors=0, part="p", done=True, ttl_s=60)
    assert sweep(store, job_id, grace_s=0) == []
    assert not [w for w in store.workers() if w["owner"].startswith(job_id)]


def test_a_forgotten_holder_is_offered_at_once_and_only_to_its_own_job(store, job_id):
    store.create_job(job_id, {})
    lease = store.acquire(job_id, 0, f"{job_id}-w1", ttl_s=60)
    store.beat(f"{job_id}-w1", {"job_id": job_id, "shard": 0, "token": lease.token}, ttl_s=60)
    store.forget(f"{job_id}-w1")  # known dead (its process is gone), though its beats had time left
    assert f"{job_id}-w1" not in {w["owner"] for w in store.workers()}
    assert sweep(store, f"{job_id}-other") == []  # an embedded run offers its own job's shards only
    assert sweep(store, job_id) == [(job_id, 0)]


def test_a_done_shard_cannot_be_failed(store, job_id):
    store.create_job(job_id, {})
    store.set_planned(job_id, total=1, shards=1)
    lease = store.acquire(job_id, 0, "w1", ttl_s=60)
    assert commit(store, job_id, lease, 1, ok=1, part="a", done=True)
    assert not store.fail_shard(job_id, 0, lease.token, "too late")
    p = store.progress(job_id)
    assert p.failed_shards == {} and store.checkpoint(job_id, 0).failed is None and p.shards_done == 1


def test_a_beat_for_a_job_the_store_lost_does_not_bring_half_of_it_back(store, job_id):
    store.beat(f"{job_id}-w1", {"job_id": job_id, "shard": 0, "token": "t"}, ttl_s=60)
    assert store.progress(job_id) is None and store.job_meta(job_id) is None
    store.forget(f"{job_id}-w1")


def test_jobs_lists_the_newest_first_and_purge_removes_all_of_one(store, job_id):
    for n, suffix in enumerate(("a", "b", "c")):
        store.create_job(f"{job_id}-{suffix}", {"model": "m", "created_at": 4e9 + n})  # newer than any other
    store.set_planned(f"{job_id}-b", total=2, shards=1)
    lease = store.acquire(f"{job_id}-b", 0, "w1", ttl_s=60)
    assert commit(store, f"{job_id}-b", lease, 2, ok=2, part="p", done=True)
    assert [p.job_id for p in store.jobs(2)] == [f"{job_id}-c", f"{job_id}-b"]
    store.purge(f"{job_id}-b")
    assert store.progress(f"{job_id}-b") is None and store.checkpoint(f"{job_id}-b", 0) == Checkpoint()
    assert store.parts(f"{job_id}-b") == []
    assert [p.job_id for p in store.jobs(2)] == [f"{job_id}-c", f"{job_id}-a"]
    for suffix in ("a", "c"):
        store.purge(f"{job_id}-{suffix}")


def test_an_ended_job_expires_after_its_ttl_and_a_running_one_does_not(store_url, job_id):
    store = open_store(store_url, job_ttl_s=1)
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


def test_the_ledger_keeps_what_a_run_report_needs(store, job_id):
    store.create_job(job_id, {})
    store.set_planned(job_id, total=30, shards=2)
    a = store.acquire(job_id, 0, "w1", ttl_s=60)
    assert store.commit(job_id, 0, a.token, offset=10, ok=9, errors=1, part="p0", done=False, ttl_s=60,
                        worker="host-a", busy_s=4.0)
    assert store.commit(job_id, 0, a.token, offset=20, ok=10, errors=0, part="p1", done=True, ttl_s=60,
                        worker="host-a", busy_s=5.0)
    b = store.acquire(job_id, 1, "w2", ttl_s=60)
    assert store.commit(job_id, 1, b.token, offset=10, ok=10, errors=0, part="p2", done=True, ttl_s=60,
                        worker="host-b", busy_s=2.5)
    store.note(job_id, "drains")
    store.note(job_id, "spot_notices")
    ledger = store.ledger(job_id)
    assert sum(ledger["timeline"].values()) == 30 and all(m % 60 == 0 for m in ledger["timeline"])
    machines = ledger["workers"]
    assert (machines["host-a"]["images"], machines["host-a"]["busy_s"]) == (20, 9.0)
    assert (machines["host-b"]["images"], machines["host-b"]["busy_s"]) == (10, 2.5)
    assert machines["host-a"]["first_at"] <= machines["host-a"]["last_at"]
    assert {k: ledger[k] for k in ("redone", "takeovers", "drains", "spot_notices")} == \
        {"redone": 0, "takeovers": 0, "drains": 1, "spot_notices": 1}
    store.purge(job_id)
    assert store.ledger(job_id)["workers"] == {}


def test_a_takeover_counts_what_the_dead_holder_had_labelled_as_redone(store, job_id):
    store.create_job(job_id, {})
    dead = store.acquire(job_id, 0, "w1", ttl_s=0)  # its lease runs out at once: the worker died
    store.beat("w1", {"job_id": job_id, "shard": 0, "token": dead.token, "labelled": 7}, ttl_s=0.001)
    wait_until(lambda: not [w for w in store.workers() if w["owner"] == "w1"], 5, "the beat to lapse")
    taken = store.acquire(job_id, 0, "w2", ttl_s=60)
    assert taken.takeovers == 1
    assert (store.ledger(job_id)["redone"], store.ledger(job_id)["takeovers"]) == (7, 1)
    # A drained holder commits before it hands back: nothing counts as redone after it.
    store.beat("w2", {"job_id": job_id, "shard": 0, "token": taken.token, "labelled": 3}, ttl_s=60)
    assert store.commit(job_id, 0, taken.token, offset=3, ok=3, errors=0, part="p", done=False, ttl_s=60)
    store.release(job_id, 0, taken.token)
    store.acquire(job_id, 0, "w3", ttl_s=60)
    assert store.ledger(job_id)["redone"] == 7


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


def test_a_commit_retried_after_its_reply_was_lost_counts_once(store, job_id):
    store.create_job(job_id, {})
    store.set_planned(job_id, total=4, shards=1)
    lease = store.acquire(job_id, 0, "w1", ttl_s=60)
    assert commit(store, job_id, lease, 4, ok=3, errors=1, part="p-0-4", done=True)
    assert commit(store, job_id, lease, 4, ok=3, errors=1, part="p-0-4", done=True)  # the same commit again
    p = store.progress(job_id)
    assert (p.ok, p.errors, p.shards_done) == (3, 1, 1)
    assert store.checkpoint(job_id, 0).parts == ["p-0-4"]
    assert not commit(store, job_id, lease, 4, ok=3, errors=1, part="p-4-8", done=True)  # a new one is refused


def test_an_empty_commit_only_renews_the_lease(store, job_id):
    store.create_job(job_id, {})
    lease = store.acquire(job_id, 0, "w1", ttl_s=0)
    assert commit(store, job_id, lease, 2, ok=2, part="a")
    assert store.commit(job_id, 0, lease.token, offset=2, ok=0, errors=0, part=None, done=False, ttl_s=60)
    assert store.acquire(job_id, 0, "w2", ttl_s=60) is None  # renewed: still held
    assert store.checkpoint(job_id, 0) == Checkpoint(offset=2, ok=2, parts=["a"])


def test_reopen_clears_failed_shards_and_the_jobs_failure(store_url, job_id):
    store = open_store(store_url, job_ttl_s=600)
    store.create_job(job_id, {})
    store.set_planned(job_id, total=4, shards=2)
    t0 = store.acquire(job_id, 0, "w1", ttl_s=60)
    t1 = store.acquire(job_id, 1, "w1", ttl_s=60)
    assert commit(store, job_id, t0, 2, ok=2, part="a", done=True)
    assert store.commit(job_id, 1, t1.token, offset=1, ok=1, errors=0, part="b", done=False, ttl_s=60)
    assert store.fail_shard(job_id, 1, t1.token, "ConnectionError: Error 111")
    store.set_state(job_id, "failed", "1 shard(s) failed")
    assert store.reopen(job_id, [0, 1]) == [1]  # shard 0 had not failed
    p = store.progress(job_id)
    assert (p.state, p.reason, p.failed_shards, p.complete) == ("running", None, {}, False)
    assert store.checkpoint(job_id, 1) == Checkpoint(offset=1, ok=1, parts=["b"])  # its committed range stays
    lease = store.acquire(job_id, 1, "w2", ttl_s=60)
    assert lease.takeovers == 0
    assert store.commit(job_id, 1, lease.token, offset=2, ok=1, errors=0, part="c", done=True, ttl_s=60)
    assert store.progress(job_id).shards_done == 2
    store.jobs(10)  # housekeeping drops expired jobs: a reopened one is running again, and kept
    assert store.progress(job_id) is not None
    if store_url.startswith("redis"):
        import redis

        from visionfleet.checkpoints import keys

        assert redis.Redis.from_url(store_url).ttl(keys.job(job_id)) == -1  # no expiry


def test_a_shard_failed_before_the_store_was_lost_is_reopened_after_the_rebuild(store, job_id):
    store.create_job(job_id, {})
    store.set_planned(job_id, total=4, shards=2)
    store.restore_shard(job_id, 0, Checkpoint(offset=2, ok=2, parts=["a"], done=True))
    store.restore_shard(job_id, 1, Checkpoint(offset=1, ok=1, parts=["b"], failed="OSError: [Errno 28] ..."))
    assert store.progress(job_id).complete
    assert store.reopen(job_id, [1]) == [1]
    p = store.progress(job_id)
    assert (p.failed_shards, p.complete, p.done) == ({}, False, 3)

"""One contract, two real stores: SQLite (embedded) and Redis (fleet)."""
import pytest

from checkpoints import open_store


@pytest.fixture(params=["sqlite", "redis"])
def store(request, tmp_path):
    if request.param == "sqlite":
        return open_store(f"sqlite:///{tmp_path / 'state.db'}")
    return open_store(request.getfixturevalue("redis_url"))


def test_new_job_is_queued_then_running_once_a_shard_is_leased(store, job_id):
    store.create_job(job_id, {"model": "m"})
    assert store.job_meta(job_id) == {"model": "m"}
    assert store.progress(job_id).state == "queued"
    assert store.acquire(job_id, 0, "w1", ttl_s=60) == 1
    assert store.progress(job_id).state == "running"


def test_unknown_job(store):
    assert store.job_meta("nope-never") is None
    assert store.progress("nope-never") is None


def test_lease_is_exclusive_until_it_expires(store, job_id):
    store.create_job(job_id, {})
    assert store.acquire(job_id, 0, "w1", ttl_s=60) == 1
    assert store.acquire(job_id, 0, "w2", ttl_s=60) is None
    assert store.acquire(job_id, 0, "w1", ttl_s=60) == 2  # the owner may re-take it
    assert store.acquire(job_id, 1, "w2", ttl_s=60) == 1  # other shards are free
    store.acquire(job_id, 2, "w1", ttl_s=0)
    assert store.acquire(job_id, 2, "w2", ttl_s=60) == 2  # expired: taken over


def test_commits_move_checkpoint_and_counters(store, job_id):
    store.create_job(job_id, {})
    store.set_planned(job_id, total=5, shards=1)
    token = store.acquire(job_id, 0, "w1", ttl_s=60)
    assert store.commit(job_id, 0, token, offset=3, ok=2, errors=1, part="p1", done=False, ttl_s=60)
    assert store.checkpoint(job_id, 0).offset == 3
    assert not store.progress(job_id).complete
    assert store.commit(job_id, 0, token, offset=5, ok=2, errors=0, part="p0", done=True, ttl_s=60)
    p = store.progress(job_id)
    assert (p.ok, p.errors, p.done, p.shards_done, p.complete) == (4, 1, 5, 1, True)
    assert store.checkpoint(job_id, 0).done
    assert store.parts(job_id) == ["p0", "p1"]


def test_stale_token_commit_is_refused_and_changes_nothing(store, job_id):
    store.create_job(job_id, {})
    old = store.acquire(job_id, 0, "w1", ttl_s=0)
    new = store.acquire(job_id, 0, "w2", ttl_s=60)
    assert new > old
    assert not store.commit(job_id, 0, old, offset=9, ok=9, errors=0, part="stale", done=True, ttl_s=60)
    assert store.checkpoint(job_id, 0).offset == 0
    assert store.parts(job_id) == []
    assert store.progress(job_id).ok == 0
    assert store.commit(job_id, 0, new, offset=9, ok=9, errors=0, part="fresh", done=True, ttl_s=60)


def test_done_shard_takes_no_more_commits(store, job_id):
    store.create_job(job_id, {})
    token = store.acquire(job_id, 0, "w1", ttl_s=60)
    assert store.commit(job_id, 0, token, offset=1, ok=1, errors=0, part="a", done=True, ttl_s=60)
    assert not store.commit(job_id, 0, token, offset=1, ok=1, errors=0, part="b", done=True, ttl_s=60)
    assert store.progress(job_id).ok == 1


def test_failed_shard_is_reported_and_completes_the_job(store, job_id):
    store.create_job(job_id, {})
    store.set_planned(job_id, total=2, shards=2)
    t0 = store.acquire(job_id, 0, "w1", ttl_s=60)
    t1 = store.acquire(job_id, 1, "w1", ttl_s=60)
    assert store.commit(job_id, 0, t0, offset=1, ok=1, errors=0, part="a", done=True, ttl_s=60)
    assert store.fail_shard(job_id, 1, t1, "boom")
    p = store.progress(job_id)
    assert p.failed_shards == {1: "boom"} and p.complete
    assert store.checkpoint(job_id, 1).failed == "boom"


def test_release_frees_the_lease(store, job_id):
    store.create_job(job_id, {})
    token = store.acquire(job_id, 0, "w1", ttl_s=60)
    store.release(job_id, 0, token)
    assert store.acquire(job_id, 0, "w2", ttl_s=60) == token + 1


def test_final_state_sticks(store, job_id):
    store.create_job(job_id, {})
    store.acquire(job_id, 0, "w1", ttl_s=60)
    store.set_state(job_id, "failed", "because")
    p = store.progress(job_id)
    assert (p.state, p.reason) == ("failed", "because")

"""The shard leases' contract (``checkpoints.shard_leases.ShardLeases``): leases, fencing, checkpoints, commits,
on SQLite and on Redis."""
from visionfleet.checkpoints.job_book import ErrorKind
from visionfleet.checkpoints.shard_leases import Checkpoint

pytest_plugins = ["tests.stores"]  # the store fixtures: SQLite and Redis


def commit(store, job_id, lease, offset, ok=0, errors=0, part=None, done=False) -> bool:
    return store.commit(job_id, 0, lease.token, offset=offset, ok=ok, errors=errors, part=part, done=done, ttl_s=60)


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


def test_a_done_shard_cannot_be_failed(store, job_id):
    store.create_job(job_id, {})
    store.set_planned(job_id, total=1, shards=1)
    lease = store.acquire(job_id, 0, "w1", ttl_s=60)
    assert commit(store, job_id, lease, 1, ok=1, part="a", done=True)
    assert not store.fail_shard(job_id, 0, lease.token, "too late")
    p = store.progress(job_id)
    assert p.failed_shards == {} and store.checkpoint(job_id, 0).failed is None and p.shards_done == 1


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


def test_reopen_clears_failed_shards_and_the_jobs_failure(backend, job_id):
    store = backend.open(job_ttl_s=600)
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
    if backend.name == "redis":
        import redis

        assert redis.Redis.from_url(backend.url).ttl(backend.keys.job(job_id)) == -1  # no expiry


def test_a_shard_failed_before_the_store_was_lost_is_reopened_after_the_rebuild(store, job_id):
    store.create_job(job_id, {})
    store.set_planned(job_id, total=4, shards=2)
    store.restore_shard(job_id, 0, Checkpoint(offset=2, ok=2, parts=["a"], done=True))
    store.restore_shard(job_id, 1, Checkpoint(offset=1, ok=1, parts=["b"], failed="OSError: [Errno 28] ..."))
    assert store.progress(job_id).complete
    assert store.reopen(job_id, [1]) == [1]
    p = store.progress(job_id)
    assert (p.failed_shards, p.complete, p.done) == ({}, False, 3)


def test_commits_count_errors_by_kind_keeping_the_first_example_and_a_retry_or_stale_commit_adds_none(store, job_id):
    store.create_job(job_id, {})
    store.set_planned(job_id, total=9, shards=2)
    assert store.error_kinds(job_id) == {}
    lease = store.acquire(job_id, 0, "w1", ttl_s=60)
    first = {"not found": ErrorKind(2, "no such file: /a.jpg"), "corrupt": ErrorKind(1, "corrupt JPEG image: x")}
    assert store.commit(job_id, 0, lease.token, offset=4, ok=1, errors=3, part="p-0-4", done=False, ttl_s=60,
                        kinds=first)
    assert store.commit(job_id, 0, lease.token, offset=4, ok=1, errors=3, part="p-0-4", done=False, ttl_s=60,
                        kinds=first)  # its reply was lost: the same commit again counts once
    other = store.acquire(job_id, 1, "w2", ttl_s=60)
    assert store.commit(job_id, 1, other.token, offset=3, ok=0, errors=3, part="p1-0-3", done=True, ttl_s=60,
                        kinds={"not found": ErrorKind(3, "no such file: /b.jpg")})
    stale = store.acquire(job_id, 0, "w1", ttl_s=60)  # a new token: the first is stale now
    assert not store.commit(job_id, 0, lease.token, offset=6, ok=0, errors=2, part="p-4-6", done=False, ttl_s=60,
                            kinds={"not found": ErrorKind(2, "no such file: /c.jpg")})
    assert store.error_kinds(job_id) == {"not found": ErrorKind(5, "no such file: /a.jpg"),
                                         "corrupt": ErrorKind(1, "corrupt JPEG image: x")}
    assert stale is not None and store.progress(job_id).errors == 6
    store.purge(job_id)
    assert store.error_kinds(job_id) == {}


def test_a_failed_job_takes_no_commit_until_it_is_reopened(store, job_id):
    """A job stopped early: its summary lists what it had, so a worker still on it commits nothing more."""
    store.create_job(job_id, {})
    store.set_planned(job_id, total=6, shards=1)
    lease = store.acquire(job_id, 0, "w1", ttl_s=60)
    assert commit(store, job_id, lease, 2, errors=2, part="a")
    store.set_state(job_id, "failed", "stopped early")
    gone = {"not found": ErrorKind(2, "no such file: /x.jpg")}
    assert not store.commit(job_id, 0, lease.token, offset=4, ok=0, errors=2, part="b", done=False, ttl_s=60,
                            kinds=gone)
    p = store.progress(job_id)
    assert (p.done, store.parts(job_id), store.checkpoint(job_id, 0).offset, store.error_kinds(job_id)) == \
        (2, ["a"], 2, {})
    assert store.reopen(job_id, []) == []  # `resume`: the job runs again
    assert store.commit(job_id, 0, lease.token, offset=4, ok=0, errors=2, part="b", done=False, ttl_s=60, kinds=gone)
    assert store.progress(job_id).done == 4 and store.error_kinds(job_id) == gone


def test_a_whole_shard_part_replaces_its_earlier_parts_at_once_and_a_retry_counts_once(store, job_id):
    store.create_job(job_id, {})
    store.set_planned(job_id, total=6, shards=2)
    other = store.acquire(job_id, 1, "w2", ttl_s=60)
    assert store.commit(job_id, 1, other.token, offset=2, ok=2, errors=0, part="q-0-2", done=False, ttl_s=60)
    lease = store.acquire(job_id, 0, "w1", ttl_s=60)
    assert commit(store, job_id, lease, 2, ok=2, part="p-0-2") and commit(store, job_id, lease, 3, ok=1, part="p-2-3")
    for _ in range(2):  # the second: a retry after its reply was lost
        assert store.commit(job_id, 0, lease.token, offset=4, ok=0, errors=1, part="p-0-4", done=True, ttl_s=60,
                            whole=True)
    assert store.checkpoint(job_id, 0) == Checkpoint(offset=4, ok=3, errors=1, parts=["p-0-4"], done=True)
    assert store.parts(job_id) == ["p-0-4", "q-0-2"]  # the other shard's part stays
    p = store.progress(job_id)
    assert (p.ok, p.errors, p.shards_done) == (5, 1, 1)
    stale = store.acquire(job_id, 1, "w3", ttl_s=60)  # w2's lease is held: none; its stale token is refused
    assert stale is None and not store.commit(job_id, 1, "stale", offset=4, ok=2, errors=0, part="q-0-4",
                                              done=True, ttl_s=60, whole=True)
    assert store.parts(job_id) == ["p-0-4", "q-0-2"]

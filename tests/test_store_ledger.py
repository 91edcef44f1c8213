"""The run ledger's contract (``checkpoints.run_ledger.RunLedger``), and what other steps write into it in
their own transaction (a commit's usage, a takeover's counts), on SQLite and on Redis."""
import time

from tests.helpers import wait_until

from visionfleet.checkpoints.redis import leases as redis_leases
from visionfleet.checkpoints.run_ledger import Usage
from visionfleet.checkpoints.sqlite import ledger as sqlite_ledger

pytest_plugins = ["tests.stores"]  # the store fixtures: SQLite and Redis


def test_the_ledger_keeps_what_a_run_report_needs(store, job_id):
    store.create_job(job_id, {})
    store.set_planned(job_id, total=30, shards=2)
    a = store.acquire(job_id, 0, "w1", ttl_s=60)
    assert store.commit(job_id, 0, a.token, offset=10, ok=9, errors=1, part="p0", done=False, ttl_s=60,
                        usage=Usage("host-a", 4.0))
    assert store.commit(job_id, 0, a.token, offset=20, ok=10, errors=0, part="p1", done=True, ttl_s=60,
                        usage=Usage("host-a", 5.0))
    b = store.acquire(job_id, 1, "w2", ttl_s=60)
    assert store.commit(job_id, 1, b.token, offset=10, ok=10, errors=0, part="p2", done=True, ttl_s=60,
                        usage=Usage("host-b", 2.5))
    store.note(job_id, "drains")
    store.note(job_id, "spot_notices")
    ledger = store.ledger(job_id)
    assert sum(ledger["timeline"].values()) == 30 and all(m % 60 == 0 for m in ledger["timeline"])
    assert sum(ledger["seconds"].values()) == 30  # the same images by the second
    machines = ledger["workers"]
    assert (machines["host-a"]["images"], machines["host-a"]["busy_s"]) == (20, 9.0)
    assert (machines["host-b"]["images"], machines["host-b"]["busy_s"]) == (10, 2.5)
    assert machines["host-a"]["first_at"] <= machines["host-a"]["last_at"]
    assert {k: ledger[k] for k in ("redone", "takeovers", "drains", "spot_notices")} == \
        {"redone": 0, "takeovers": 0, "drains": 1, "spot_notices": 1}
    store.purge(job_id)
    assert (store.ledger(job_id)["workers"], store.ledger(job_id)["seconds"]) == ({}, {})


def test_a_commit_s_images_are_spread_over_the_seconds_it_took_to_label_them(store, job_id):
    """By the second, a commit every few seconds would draw spikes; its busy seconds say when its images came."""
    store.create_job(job_id, {})
    lease = store.acquire(job_id, 0, "w1", ttl_s=60)
    assert store.commit(job_id, 0, lease.token, offset=8, ok=8, errors=0, part="p0", done=True, ttl_s=60,
                        usage=Usage("host-a", 4.0))
    seconds = store.ledger(job_id)["seconds"]
    assert sorted(seconds) == list(range(min(seconds), min(seconds) + 5))  # now - 4 s to now: five seconds
    assert sorted(seconds.values()) == [1, 1, 2, 2, 2]


def test_the_ledger_keeps_seconds_up_to_its_bound_and_minutes_always(store, job_id, monkeypatch):
    """A multi-day job must not grow a field a second: past the bound only its minutes grow."""
    monkeypatch.setattr(redis_leases, "SECONDS_KEPT", 1)
    monkeypatch.setattr(sqlite_ledger, "SECONDS_KEPT", 1)
    store.create_job(job_id, {})
    lease = store.acquire(job_id, 0, "w1", ttl_s=60)
    assert store.commit(job_id, 0, lease.token, offset=4, ok=4, errors=0, part="p0", done=False, ttl_s=60,
                        usage=Usage("host-a", 0.0))
    (first,) = store.ledger(job_id)["seconds"]
    wait_until(lambda: time.time() >= first + 1, 5, "the next second (the store's clock is this machine's)")
    assert store.commit(job_id, 0, lease.token, offset=10, ok=6, errors=0, part="p1", done=True, ttl_s=60,
                        usage=Usage("host-a", 0.0))
    ledger = store.ledger(job_id)
    assert ledger["seconds"] == {first: 4} and sum(ledger["timeline"].values()) == 10


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


def test_a_refused_commit_adds_nothing_to_the_ledger(store, job_id):
    """The usage is written in the commit's own transaction: a stale token's commit leaves no trace."""
    store.create_job(job_id, {})
    old = store.acquire(job_id, 0, "w1", ttl_s=0)
    new = store.acquire(job_id, 0, "w2", ttl_s=60)
    assert not store.commit(job_id, 0, old.token, offset=5, ok=5, errors=0, part="stale", done=False, ttl_s=60,
                            usage=Usage("host-old", 3.0))
    assert store.commit(job_id, 0, new.token, offset=0, ok=0, errors=0, part=None, done=False, ttl_s=60)  # renewal
    ledger = store.ledger(job_id)
    assert (ledger["timeline"], ledger["seconds"], ledger["workers"]) == ({}, {}, {})

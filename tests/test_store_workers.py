"""The worker registry's contract (``checkpoints.worker_registry.WorkerRegistry``): beats, live workers, dead
holders' shards offered again, on SQLite and on Redis."""
import pytest

from tests.helpers import wait_until

pytest_plugins = ["tests.stores"]  # the store fixtures: SQLite and Redis


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


def test_a_beat_for_a_job_the_store_lost_does_not_bring_half_of_it_back(store, job_id):
    store.beat(f"{job_id}-w1", {"job_id": job_id, "shard": 0, "token": "t"}, ttl_s=60)
    assert store.progress(job_id) is None and store.job_meta(job_id) is None
    store.forget(f"{job_id}-w1")

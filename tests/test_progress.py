"""Waiting on a job: the hint when no worker takes it, under an injected clock."""
from visionfleet.checkpoints import open_store
from visionfleet.cli.progress import wait


def queued_job(tmp_path):
    store = open_store(f"sqlite:///{tmp_path / 'state.db'}")
    store.create_job("j1", {"job_id": "j1", "model": "m", "source": "s", "output": str(tmp_path)})
    store.set_planned("j1", 3, 1)
    return store


def run_wait(store, *, start_at: float | None, end_at: float = 45.0) -> None:
    """Wait with a fake clock: a worker starts the job at ``start_at`` (or never); cancelled at ``end_at``."""
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds
        if start_at is not None and now[0] >= start_at:
            store.acquire("j1", 0, "w", ttl_s=60)  # a worker leases the shard: the job is running
        if now[0] >= end_at:
            store.set_state("j1", "cancelled", "test over")

    assert wait(store, "j1", bar=False, hint_after_s=30, clock=lambda: now[0], sleep=sleep).state == "cancelled"


def test_a_job_no_worker_starts_gets_one_hint(tmp_path, capsys):
    store = queued_job(tmp_path)
    run_wait(store, start_at=None)
    err = capsys.readouterr().err
    assert err.count("no worker has started job j1 after 30s") == 1
    assert "`visionfleet worker`" in err and "`visionfleet status j1`" in err


def test_a_job_a_worker_starts_gets_none(tmp_path, capsys):
    store = queued_job(tmp_path)
    run_wait(store, start_at=5.0)
    assert "no worker" not in capsys.readouterr().err

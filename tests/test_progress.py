"""Waiting on a job and showing it: the hint when no worker takes it (under an injected clock),
live workers and their uncommitted labels, and a job that no worker is on."""
import time

import pytest

from visionfleet.checkpoints import open_store
from visionfleet.cli.progress import look, wait
from visionfleet.pipeline.errors import VisionfleetError
from visionfleet.pipeline.job import Job, JobSpec


def queued_job(tmp_path):
    store = open_store(f"sqlite:///{tmp_path / 'state.db'}")
    store.create_job("j1", Job("j1", JobSpec("s", str(tmp_path / "j1"), model="m"), time.time()).to_dict())
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

    assert wait(store, "j1", bar=False, hint_after_s=30, clock=lambda: now[0], sleep=sleep).progress.state == "cancelled"


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


def test_status_counts_what_live_workers_have_labelled_and_names_them(tmp_path):
    store = queued_job(tmp_path)
    lease = store.acquire("j1", 0, "w1", ttl_s=60)
    store.beat("w1", {"job_id": "j1", "shard": 0, "token": lease.token, "labelled": 2}, ttl_s=60)
    view = look(store, "j1")
    assert view.in_flight == 2 and view.unattended_s is None
    assert "1 worker instance on it (2 labelled, not yet committed)" in view.line()
    got = view.as_dict()
    assert [(w["owner"], w["shard"], w["labelled"]) for w in got["workers"]] == [("w1", 0, 2)]
    assert got["done"] == 0 and got["no_worker_for_s"] is None


def test_a_started_job_no_worker_is_on_says_so_instead_of_an_eta(tmp_path):
    store = queued_job(tmp_path)
    lease = store.acquire("j1", 0, "w1", ttl_s=60)
    store.beat("w1", {"job_id": "j1", "shard": 0, "token": lease.token}, ttl_s=60)
    store.commit("j1", 0, lease.token, offset=1, ok=1, errors=0, part="p", done=False, ttl_s=60)
    store.forget("w1")  # it exited
    view = look(store, "j1")
    line = view.line()
    assert "running 1/3 done" in line and "ETA" not in line
    assert "no worker has been seen on it for 0s" in line
    assert f"visionfleet resume j1 --output {tmp_path} --wait" in line
    got = view.as_dict()
    assert got["no_worker_for_s"] == 0 and got["eta_s"] is None and got["workers"] == []


def test_a_job_the_store_loses_while_waited_on_ends_the_wait_with_how_to_finish_it(tmp_path):
    store = queued_job(tmp_path)
    with pytest.raises(VisionfleetError) as lost:
        wait(store, "j1", bar=False, sleep=lambda seconds: store.purge("j1"))  # e.g. Redis restarted
    assert "job j1 is no longer in the state store" in str(lost.value)
    assert f"`visionfleet resume j1 --output {tmp_path} --wait`" in str(lost.value)


def test_a_worker_waiting_out_a_fault_shows_the_job_running_with_the_reason(tmp_path):
    import time

    from visionfleet.workers.heartbeat import Activity

    store = queued_job(tmp_path)  # no shard leased yet: the fault struck while the model was prepared
    activity = Activity()
    since = time.time() - 65
    activity.wait("j1", 0, "output disk full (No space left on device: /data/j1/_engines/m.json)", since)
    store.beat("w1", activity.as_info(), ttl_s=60)
    view = look(store, "j1")
    line = view.line()
    assert line.startswith("j1: running 0/3 done") and view.unattended_s is None
    clock = time.strftime("%H:%M:%S", time.localtime(since))
    assert f"waiting: output disk full (No space left on device: /data/j1/_engines/m.json) on worker w1 since " \
           f"{clock}" in line
    got = view.as_dict()
    assert got["state"] == "running"
    assert got["waiting"] == [{"owner": "w1", "reason": activity.waiting["reason"], "since": since}]
    activity.waited()
    store.beat("w1", activity.as_info(), ttl_s=60)  # the fault passed
    assert look(store, "j1").as_dict()["waiting"] == []


def finish_on_first_pause(store, now: list[float]):
    """A fake pause: a second passes, in which a worker commits the rest of j1's one shard and ends the job."""
    def sleep(seconds: float) -> None:
        now[0] += 1.0
        lease = store.acquire("j1", 0, "w", ttl_s=60)
        checkpoint = store.checkpoint("j1", 0)
        store.commit("j1", 0, lease.token, offset=3, ok=3 - checkpoint.offset, errors=0, part="p2", done=True,
                     ttl_s=60)
        store.set_state("j1", "succeeded")
    return sleep


def test_the_bar_is_first_drawn_with_the_job_never_as_an_empty_bar_of_unknown_length(tmp_path, capsys):
    store = queued_job(tmp_path)
    now = [0.0]
    wait(store, "j1", bar=True, clock=lambda: now[0], sleep=finish_on_first_pause(store, now))
    err = capsys.readouterr().err
    assert "0/?" not in err and "0/3" in err and "3/3" in err


def test_a_resumed_jobs_rate_is_this_runs_and_says_so(tmp_path):
    store = queued_job(tmp_path)
    lease = store.acquire("j1", 0, "w1", ttl_s=60)
    store.commit("j1", 0, lease.token, offset=1, ok=1, errors=0, part="p1", done=False, ttl_s=60)
    store.release("j1", 0, lease.token)  # that run stopped
    now = [100.0]
    final = wait(store, "j1", bar=False, clock=lambda: now[0], sleep=finish_on_first_pause(store, now))
    assert final.this_run == (2, 1.0)
    assert ", 2.0 images/s this run" in final.line()
    fresh = queued_job(tmp_path / "fresh")  # nothing committed before: the store's rate, as before
    assert look(fresh, "j1").this_run is None


def test_an_interrupted_job_reads_interrupted_with_what_finishes_it_and_stays_running_for_scripts(tmp_path):
    from visionfleet.cli.progress import job_row

    store = queued_job(tmp_path)
    lease = store.acquire("j1", 0, "w1", ttl_s=60)
    store.commit("j1", 0, lease.token, offset=1, ok=1, errors=0, part="p", done=False, ttl_s=60)
    store.set_state("j1", "interrupted", "interrupted with Ctrl-C; `visionfleet resume j1 ...` finishes it")
    view = look(store, "j1")
    line = view.line()
    assert line.startswith("j1: interrupted 1/3 done, 0 errors") and "no worker has been seen" not in line
    assert "(interrupted with Ctrl-C; `visionfleet resume j1 ...` finishes it)" in line
    got = view.as_dict()
    assert (got["state"], got["interrupted"]) == ("running", True)
    assert "  interrupted  1/3 done  0 errors  " in job_row(view.progress, view.now)


def test_counted_nouns_agree_with_their_number():
    from visionfleet.pipeline.words import count

    assert [count(n, "drain") for n in (0, 1, 2)] == ["0 drains", "1 drain", "2 drains"]
    assert (count(1, "try", "tries"), count(3, "try", "tries")) == ("1 try", "3 tries")


def test_an_interrupted_job_has_no_eta_until_it_is_resumed():
    from visionfleet.checkpoints.job_book import Progress

    def progress(interrupted: bool) -> Progress:  # 1 of 3 labelled in its first second
        return Progress("j1", "running", planned=True, total=3, shards=1, shards_done=0, ok=1, errors=0,
                        created_at=0.0, started_at=10.0, updated_at=11.0, interrupted=interrupted)

    assert progress(False).eta_s == 2.0
    assert progress(True).eta_s is None and progress(True).as_dict()["eta_s"] is None

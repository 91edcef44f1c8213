"""The shard loop in one process: commit cadence, drain hand-back, fencing,
durable copies. Real SQLite store, real local storage, the counting model
(the real model runs this loop in test_fleet.py and test_preemption.py)."""
import json

import pytest
import redis
from prometheus_client import REGISTRY

from visionfleet.broker.counters import CounterHook, Counters
from visionfleet.broker.planner import plan_job
from visionfleet.checkpoints import open_store
from visionfleet.checkpoints.keys import DEFAULT_NAMESPACE, Keys
from visionfleet.checkpoints.hooks import NO_HOOKS, Hooks
from visionfleet.checkpoints.resume import resume_job
from visionfleet.pipeline import shard_lists
from visionfleet.pipeline.job import Job, JobSpec
from visionfleet.pipeline.labeller import Labeller, LoadSettings
from visionfleet.pipeline.sink import sink_for
from visionfleet.reports.run import RunReport
from tests.photos import distinct_jpegs
from tests.test_hooks import Failing, Recorder
from tests.test_labeller import CountingModel
from visionfleet.workers.watchers import MACHINE, Ledger, Prometheus
from visionfleet.workers.settings import WorkerSettings
from visionfleet.workers.shard_runner import Outcome, ShardRun


@pytest.fixture
def job(tmp_path):
    for i, data in enumerate(distinct_jpegs(20)):
        (tmp_path / "in").mkdir(exist_ok=True)
        (tmp_path / "in" / f"{i:02d}.jpg").write_bytes(data)
    store = open_store(f"sqlite:///{tmp_path / 'state.db'}")
    sent = []
    spec = JobSpec(source=str(tmp_path / "in"), output=str(tmp_path / "out"), shard_size=20)
    job_id = plan_job(spec, store, lambda j, s: sent.append((j, s)))
    assert sent == [(job_id, 0)]
    return store, job_id, tmp_path / "out" / job_id


def stored(store, job_id):
    """The job as the task hands it over: read once from the store."""
    return Job.from_dict(store.job_meta(job_id))


def runner(store, owner="w1", commit_every=6, stop=lambda: False, interval_s=3600.0, clock=None,
           hooks=NO_HOOKS) -> ShardRun:
    labeller = Labeller(CountingModel(max_batch_size=4), LoadSettings(io_threads=2))
    settings = WorkerSettings(commit_every=commit_every, commit_interval_s=interval_s, lease_ttl_s=60)
    return ShardRun(store, labeller, settings, owner, should_stop=stop, hooks=hooks,
                    **({"clock": clock} if clock else {}))


def test_commits_every_n_and_finalises(job):
    store, job_id, root = job
    assert runner(store).run(stored(store, job_id), 0) is Outcome.DONE
    parts = store.parts(job_id)
    assert [tuple(map(int, p.split("-")[2:4])) for p in sorted(parts, key=lambda p: p.split("-")[2])] == \
        [(0, 4), (4, 10), (10, 16), (16, 20)]  # the first after one model batch, then every 6
    summary = json.loads((root / "_SUCCESS.json").read_text())
    assert (summary["total"], summary["ok"], summary["errors"], sorted(summary["parts"])) == (20, 20, 0, parts)
    durable = json.loads((root / "_checkpoints" / "shard-000000.json").read_text())
    assert (durable["offset"], durable["done"], len(durable["parts"])) == (20, True, 4)
    assert runner(store, owner="w2").run(stored(store, job_id), 0) is Outcome.DONE  # a redelivery finds it done


def test_drain_commits_what_it_has_and_hands_back(job):
    store, job_id, root = job
    calls = []

    def stop_after_ten() -> bool:
        calls.append(1)
        return len(calls) >= 10

    assert runner(store, stop=stop_after_ten).run(stored(store, job_id), 0) is Outcome.HANDED_BACK
    assert store.checkpoint(job_id, 0).offset == 9  # one look before starting, then one per record
    assert runner(store, owner="w2").run(stored(store, job_id), 0) is Outcome.DONE  # released: no wait for the lease
    assert store.progress(job_id).state == "succeeded"
    lines = sum(len(p.read_text().splitlines()) for p in root.glob("part-*.jsonl"))
    assert lines == 20  # nothing labelled twice


def test_busy_while_another_lease_runs(job):
    store, job_id, _ = job
    store.acquire(job_id, 0, "someone-else", ttl_s=60)
    assert runner(store).run(stored(store, job_id), 0) is Outcome.BUSY


def test_lost_lease_refuses_the_commit_and_removes_the_orphan(job):
    store, job_id, root = job

    def steal() -> bool:  # another worker takes the shard mid-run
        store.release(job_id, 0, run.activity.token)
        store.acquire(job_id, 0, "thief", ttl_s=60)
        return False

    run = runner(store, stop=steal)
    assert run.run(stored(store, job_id), 0) is Outcome.LOST_LEASE
    assert store.checkpoint(job_id, 0).offset == 0
    assert list(root.glob("part-*.jsonl")) == []


def test_plan_files_describe_the_job(job):
    _, job_id, root = job
    assert json.loads((root / "_plan" / "plan.json").read_text()) == {"total": 20, "shards": 1}
    meta = json.loads((root / "_plan" / "job.json").read_text())
    assert meta["job_id"] == job_id and meta["output"] == str(root)
    assert len((root / "_plan" / "shard-000000.jsonl").read_text().splitlines()) == 20
    assert sink_for(str(root)).part_name(3, 0, 10, "ab") == "part-000003-0000000-0000010-tab.jsonl"


def test_cancelled_job_stops_at_the_next_commit(job):
    store, job_id, root = job
    calls = []

    def cancel_midway() -> bool:
        calls.append(1)
        if len(calls) == 8:
            store.set_state(job_id, "cancelled", "by test")
        return False

    assert runner(store, stop=cancel_midway).run(stored(store, job_id), 0) is Outcome.CANCELLED
    assert store.checkpoint(job_id, 0).offset == 10  # the commit after the cancel, then stop
    assert runner(store, owner="w2").run(stored(store, job_id), 0) is Outcome.CANCELLED  # redeliveries do nothing
    assert not (root / "_SUCCESS.json").exists()
    assert store.progress(job_id).state == "cancelled"


def test_commits_also_on_time_under_an_injected_clock(job):
    store, job_id, _ = job
    now = [0.0]

    def clock() -> float:  # each look at the time finds 1 s gone
        now[0] += 1.0
        return now[0]

    assert runner(store, commit_every=1000, interval_s=5.5, clock=clock).run(stored(store, job_id), 0) is Outcome.DONE
    spans = sorted(tuple(map(int, p.split("-")[2:4])) for p in store.parts(job_id))
    # The first after one model batch; then one look per record and one per commit: 6 records per 5.5 s.
    assert spans == [(0, 4), (4, 10), (10, 16), (16, 20)]


def test_a_job_planned_before_json_lines_still_resumes_from_its_bare_lines(job):
    """Plans written by earlier versions (``shard-*.txt``, one bare URI a line; a job.json of the first
    release's fields, no schema) resume as they were."""
    store, job_id, root = job
    plan = root / "_plan"
    uris = [uri for uri, _ in shard_lists.decode((plan / "shard-000000.jsonl").read_bytes())]
    (plan / "shard-000000.jsonl").unlink()
    (plan / "shard-000000.txt").write_text("\n".join(uris) + "\n")
    meta = json.loads((plan / "job.json").read_text())
    first_release = ("source", "output", "model", "top_k", "shard_size", "all_files", "job_id", "created_at")
    (plan / "job.json").write_text(json.dumps({k: meta[k] for k in first_release}))
    store.purge(job_id)
    assert resume_job(store, str(root.parent), job_id, lambda j, s: None).shards == [0]  # rebuilt from old files
    assert runner(store).run(stored(store, job_id), 0) is Outcome.DONE
    assert store.progress(job_id).state == "succeeded" and store.progress(job_id).ok == 20
    records = [json.loads(line) for p in root.glob("part-*.jsonl") for line in p.read_text().splitlines()]
    assert sorted(r["uri"] for r in records) == sorted(uris)


@pytest.fixture
def counters(redis_url):
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.delete(Keys(DEFAULT_NAMESPACE).METRICS)
    yield client
    client.delete(Keys(DEFAULT_NAMESPACE).METRICS)
    client.close()


def test_the_worker_hooks_count_the_commits_keep_the_ledger_and_write_the_report(job, counters):
    store, job_id, root = job
    samples = {("visionfleet_commits_total", ()): 4,
               ("visionfleet_images_total", (("queue", "bulk"), ("status", "ok"))): 20,
               ("visionfleet_stage_seconds_count", (("stage", "write"),)): 4,
               ("visionfleet_stage_seconds_count", (("stage", "commit"),)): 4}

    def now() -> dict:  # this process's Prometheus samples (no multiprocess folder in a test)
        return {(name, labels): REGISTRY.get_sample_value(name, dict(labels)) or 0.0 for name, labels in samples}

    before = now()
    hooks = Hooks([Ledger(), Prometheus(), CounterHook(Counters(counters, DEFAULT_NAMESPACE)), RunReport([])])
    assert runner(store, hooks=hooks).run(stored(store, job_id), 0) is Outcome.DONE
    assert {key: value - before[key] for key, value in now().items()} == samples
    assert counters.hgetall(Keys(DEFAULT_NAMESPACE).METRICS) == {
        "bulk_images_ok": "20", "bulk_images_error": "0", "bulk_commits": "4", "bulk_shards_done": "1"}
    machine = store.ledger(job_id)["workers"][MACHINE]
    assert machine["images"] == 20 and machine["busy_s"] > 0  # kept by the store with each commit
    report = json.loads((root / "_REPORT.json").read_text())
    assert (report["images"], [w["worker"] for w in report["workers"]]) == (20, [MACHINE])
    takeovers = REGISTRY.get_sample_value("visionfleet_shard_takeovers_total")
    for hook in (Prometheus(), CounterHook(Counters(counters, DEFAULT_NAMESPACE))):
        hook.on_shard_start(job_id, 0, 0)  # a first try is no takeover
        hook.on_shard_start(job_id, 0, 2)
    assert REGISTRY.get_sample_value("visionfleet_shard_takeovers_total") - takeovers == 1
    assert counters.hget(Keys(DEFAULT_NAMESPACE).METRICS, "bulk_shard_takeovers") == "1"


def test_a_failing_hook_fails_no_shard_and_the_others_still_hear(job):
    store, job_id, root = job
    heard = []
    hooks = Hooks([Failing(), Recorder("after", heard), Ledger(), RunReport([])])
    assert runner(store, hooks=hooks).run(stored(store, job_id), 0) is Outcome.DONE
    assert store.progress(job_id).state == "succeeded"
    commits = [h[2] for h in heard if h[1] == "commit"]
    assert [(c.ok, c.done) for c in commits] == [(4, False), (6, False), (6, False), (4, True)]
    assert heard[0] == ("after", "start", job_id, 0, 0) and heard[-1] == ("after", "end", job_id, "succeeded")
    assert store.ledger(job_id)["workers"][MACHINE]["images"] == 20  # the usage came from the next hook
    assert json.loads((root / "_REPORT.json").read_text())["images"] == 20

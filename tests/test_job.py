"""The typed job: built once by the planner, stored in the flat shape job.json has always had (plus
``schema``), rebuilt as the same ``Job`` from a real store; forward compatible (unknown fields ignored
with one warning), a broken record fails the job with the reason, an old record still runs."""
import json
import logging
import re
import time
import uuid

import pytest

from tests.helpers import wait_until
from tests.test_labeller import CountingModel
from tests.photos import distinct_jpegs
from visionfleet.broker.celery_app import make_app
from visionfleet.broker.planner import check_access, plan_job
from visionfleet.broker.routes import RELABEL_SHARD_TASK, queue_name
from visionfleet.broker.settings import BrokerSettings
from visionfleet.checkpoints import open_store
from visionfleet.pipeline import shard_lists
from visionfleet.pipeline.errors import ConfigError
from visionfleet.pipeline.job import SCHEMA, Job, JobSpec
from visionfleet.pipeline.labeller import Labeller, LoadSettings
from visionfleet.workers.settings import WorkerSettings
from visionfleet.workers.shard_runner import Outcome, ShardRun

DROP = object()
# What every job stored before the schema version had, in the first release's shape (no later field).
FIRST_RELEASE = ("source", "output", "model", "top_k", "shard_size", "all_files", "job_id", "created_at")


def a_job(job_id: str = "j1", **spec) -> Job:
    return Job(job_id, JobSpec("/in", f"/out/{job_id}", **spec), time.time(), shard_lists.FORMAT)


def test_the_planner_stores_one_job_in_the_flat_shape_and_a_real_store_gives_it_back(tmp_path, redis_url):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.jpg").write_bytes(distinct_jpegs(1)[0])
    sqlite = open_store(f"sqlite:///{tmp_path / 'state.db'}")
    job_id = plan_job(JobSpec(str(tmp_path / "in"), str(tmp_path / "out"), include=("*.jpg",)), sqlite,
                      lambda j, s: None)
    stored = json.loads((tmp_path / "out" / job_id / "_plan" / "job.json").read_text())
    assert stored == sqlite.job_meta(job_id)
    assert stored.keys() == {"source", "output", "model", "top_k", "shard_size", "all_files", "cache", "runtime",
                             "precision", "calibration", "allow_empty", "include", "exclude", "job_id",
                             "created_at", "shard_lists", "schema", "output_format",
                             "max_error_rate", "embeddings", "model_digest",
                             "incremental_from"}  # the old meta, plus its later fields
    assert (stored["output"], stored["shard_lists"], stored["schema"]) == (str(tmp_path / "out" / job_id), "entries", 1)
    job = Job.from_dict(stored)
    assert (job.job_id, job.root, job.spec.include, job.shard_lists) == (job_id, stored["output"], ("*.jpg",), "entries")
    redis_store = open_store(redis_url)  # the fleet's store: the same Job back through JSON in Redis
    redis_store.create_job(job_id, job.to_dict())
    try:
        assert Job.from_dict(redis_store.job_meta(job_id)) == job
    finally:
        redis_store.purge(job_id)


def test_unknown_fields_are_ignored_with_one_warning_naming_them(caplog):
    job = a_job(f"newer-{uuid.uuid4().hex[:8]}")
    newer = {**job.to_dict(), "schema": SCHEMA + 1, "priority": 3, "vectors": {"dim": 512}}
    with caplog.at_level(logging.WARNING, logger="visionfleet.pipeline.job"):
        assert Job.from_dict(newer) == job
        assert Job.from_dict(newer) == job  # every shard reads the job again: still one line
    (record,) = [r for r in caplog.records if r.name == "visionfleet.pipeline.job"]
    assert record.levelno == logging.WARNING and record.fields == ["priority", "vectors"]
    assert (record.job_id, record.schema) == (job.job_id, SCHEMA + 1)


@pytest.mark.parametrize("name, value, reason", [
    ("model", DROP, "job j1 cannot be read: its stored description lacks model (schema 1)"),
    ("created_at", DROP, "lacks created_at"),
    ("top_k", "five", "job j1 cannot be read: its stored top_k is 'five' (int expected)"),
    ("all_files", 1, "its stored all_files is 1 (bool expected)"),
    ("include", "*.jpg", "its stored include is '*.jpg' (tuple[str, ...] expected)"),
    ("created_at", True, "its stored created_at is True (float expected)"),
])
def test_a_missing_or_mistyped_field_is_a_clear_error(name, value, reason):
    stored = {**a_job().to_dict(), name: value}
    if value is DROP:
        del stored[name]
    with pytest.raises(ConfigError, match=re.escape(reason)):
        Job.from_dict(stored)


def test_a_job_stored_before_the_schema_runs_with_the_defaults_it_ran_with(tmp_path):
    """An old record in the store itself (no schema, only the first release's fields, bare-line lists)."""
    for i, data in enumerate(distinct_jpegs(6)):
        (tmp_path / "in").mkdir(exist_ok=True)
        (tmp_path / "in" / f"{i}.jpg").write_bytes(data)
    store = open_store(f"sqlite:///{tmp_path / 'state.db'}")
    job_id = plan_job(JobSpec(str(tmp_path / "in"), str(tmp_path / "out")), store, lambda j, s: None)
    root = tmp_path / "out" / job_id
    uris = [uri for uri, _ in shard_lists.decode((root / "_plan" / "shard-000000.jsonl").read_bytes())]
    (root / "_plan" / "shard-000000.jsonl").rename(root / "_plan" / "shard-000000.txt")
    (root / "_plan" / "shard-000000.txt").write_text("\n".join(uris) + "\n")
    old = {k: v for k, v in store.job_meta(job_id).items() if k in FIRST_RELEASE}
    store.purge(job_id)
    store.create_job(job_id, old)
    store.set_planned(job_id, 6, 1)
    job = Job.from_dict(store.job_meta(job_id))
    assert (job.shard_lists, job.spec.cache, job.spec.runtime, job.spec.calibration, job.spec.include) == \
        (None, False, "auto", None, ())
    labeller = Labeller(CountingModel(max_batch_size=4), LoadSettings(io_threads=2))
    run = ShardRun(store, labeller, WorkerSettings(lease_ttl_s=60), "w1")
    assert run.run(Job.from_dict(store.job_meta(job_id)), 0) is Outcome.DONE
    assert store.progress(job_id).state == "succeeded" and store.progress(job_id).ok == 6


@pytest.mark.slow
def test_a_worker_fails_a_job_it_cannot_read_and_drops_an_unknown_jobs_message(fleet_env, workers, monkeypatch,
                                                                                 tmp_path):
    for key, value in fleet_env.items():
        if key.startswith("VISIONFLEET_"):
            monkeypatch.setenv(key, value)
    settings = BrokerSettings.from_env()
    app = make_app(settings)
    store = open_store(fleet_env["VISIONFLEET_BROKER_URL"])
    lacking, mistyped = (f"broken-{uuid.uuid4().hex[:8]}" for _ in range(2))
    store.create_job(lacking, {k: v for k, v in a_job(lacking).to_dict().items() if k != "model"})
    store.create_job(mistyped, {**a_job(mistyped).to_dict(), "top_k": "five"})
    for job_id in (lacking, mistyped):
        store.set_planned(job_id, 1, 1)
    workers.start(1)
    for job_id in (lacking, mistyped):
        app.send_task(RELABEL_SHARD_TASK, args=[job_id, 0], queue=queue_name("bulk", settings.namespace))
    wait_until(lambda: store.progress(lacking).state == store.progress(mistyped).state == "failed", 120,
               "both jobs failed")
    assert store.progress(lacking).reason.startswith(f"job {lacking} cannot be read: its stored description lacks "
                                                     "model")
    assert store.progress(mistyped).reason.startswith(f"job {mistyped} cannot be read: its stored top_k is 'five'")
    wait_until(lambda: workers.logs(tail=100_000).count("its stored description cannot be read") == 2, 30,
               "one log line per job")
    unknown = f"unknown-{uuid.uuid4().hex[:8]}"  # no such job at all: dropped by the task, the runner never sees it
    app.send_task(RELABEL_SHARD_TASK, args=[unknown, 0], queue=queue_name("bulk", settings.namespace))
    wait_until(lambda: any("unknown job: message dropped" in line and unknown in line
                           for line in workers.logs(tail=100_000).splitlines()), 60, "the unknown job's message dropped")
    assert all(w.poll() is None for w in workers.procs)


def test_a_job_stored_before_output_formats_writes_json_lines(tmp_path):
    stored = {k: v for k, v in a_job().to_dict().items() if k in FIRST_RELEASE}
    job = Job.from_dict(stored)
    assert job.spec.output_format == "jsonl"
    assert job.sink().part_name(0, 0, 5, "t") == "part-000000-0000000-0000005-tt.jsonl"


def test_a_job_stored_before_the_error_rate_accepts_any_share_as_it_ran():
    stored = {k: v for k, v in a_job(max_error_rate=0.5).to_dict().items() if k != "max_error_rate"}
    assert Job.from_dict(stored).spec.max_error_rate == 1
    assert Job.from_dict(json.loads(json.dumps(a_job(max_error_rate=0.0).to_dict()))).spec.max_error_rate == 0


def test_an_output_format_no_worker_writes_is_refused_before_anything_is_planned(tmp_path):
    (tmp_path / "in").mkdir()
    spec = JobSpec(str(tmp_path / "in"), str(tmp_path / "out"), output_format="csv")
    with pytest.raises(ConfigError, match="no output format 'csv'; choose one of: jsonl, parquet"):
        check_access(spec, embedded=True)
    assert not (tmp_path / "out").exists()

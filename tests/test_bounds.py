"""What a bogus input may cost: a gzip'd manifest of nothing but newlines, a shard message that names a
shard no plan has. Each is refused early, and leaves nothing behind."""
import gzip
import time
import uuid

import pytest
import redis

from tests.helpers import embedded_env, visionfleet, wait_until
from visionfleet.broker.celery_app import make_app
from visionfleet.broker.routes import RELABEL_SHARD_TASK, queue_name
from visionfleet.broker.settings import BrokerSettings
from visionfleet.checkpoints import open_store
from visionfleet.pipeline.errors import ConfigError
from visionfleet.pipeline.job import Job, JobSpec
from visionfleet.pipeline.sources import MAX_SKIPPED_BYTES, iter_source


@pytest.mark.slow
def test_a_gzipped_manifest_of_newlines_is_refused_at_once_with_its_line(tmp_path):
    bomb = tmp_path / "list.txt.gz"
    with gzip.open(bomb, "wb", compresslevel=9) as out:  # 30 MB of newlines in 30 KB: 6 s of CPU to read through
        for _ in range(30):
            out.write(b"\n" * (1 << 20))
    assert bomb.stat().st_size < 100_000
    with pytest.raises(ConfigError, match=f"list.txt.gz, line {MAX_SKIPPED_BYTES + 1}: over {MAX_SKIPPED_BYTES} "
                                          "bytes of blank or comment lines in a row"):
        list(iter_source(str(bomb)))
    result = visionfleet("relabel", str(bomb), "-o", str(tmp_path / "out"), env=embedded_env(tmp_path), timeout=120)
    assert result.returncode == 2 and f"over {MAX_SKIPPED_BYTES} bytes of blank" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_blank_and_comment_lines_between_uris_are_fine_below_the_bound(tmp_path):
    gap = "\n" * (MAX_SKIPPED_BYTES // 2) + "# a comment\n   \n"
    manifest = tmp_path / "list.txt.gz"
    manifest.write_bytes(gzip.compress(("".join(f"{gap}oss://b/{i}.jpg\n" for i in range(40)) + gap).encode()))
    assert list(iter_source(str(manifest))) == [f"oss://b/{i}.jpg" for i in range(40)]


@pytest.mark.slow
def test_a_message_naming_a_shard_no_plan_has_leaves_no_key_behind(bucket, fleet_env, workers, monkeypatch):
    """Shard 999999 of a real job, planned or still planning: dropped before any state is kept for it."""
    for key, value in fleet_env.items():
        if key.startswith(("VISIONFLEET_", "OSS_")):
            monkeypatch.setenv(key, value)
    app = make_app(BrokerSettings.from_env())
    store = open_store(fleet_env["VISIONFLEET_BROKER_URL"])
    client = redis.Redis.from_url(fleet_env["VISIONFLEET_BROKER_URL"], decode_responses=True)
    planned, planning = (f"bogus-{uuid.uuid4().hex[:8]}" for _ in range(2))
    for job_id in (planned, planning):
        spec = JobSpec(f"oss://{bucket.bucket_name}/in/", f"oss://{bucket.bucket_name}/out/{job_id}")
        store.create_job(job_id, Job(job_id, spec, time.time()).to_dict())  # bare-line lists: none written
    store.set_planned(planned, 3, 1)  # shard 0 only; its message is not sent: the job stays queued
    workers.start(1)
    bulk = queue_name("bulk", app.broker_settings.namespace)
    for job_id, shard in ((planned, 999_999), (planned, 1), (planning, 999_999)):
        app.send_task(RELABEL_SHARD_TASK, args=[job_id, shard], queue=bulk)
    wait_until(lambda: workers.logs(tail=100_000).count("no such shard in the job's plan") == 3, 120,
               "the three messages dropped")
    assert [k for k in client.scan_iter("*", count=1000) if ":shard:" in k] == []
    assert store.progress(planned).state == store.progress(planning).state == "queued"
    assert not store.progress(planned).failed_shards
    assert all(w.poll() is None for w in workers.procs)

"""The whole path with real parts: OSS server -> Redis -> worker processes -> OSS."""
import json
from concurrent.futures import ThreadPoolExecutor

import amqp
import kombu
import pytest
import redis

from bench.e2e_bench import make_photos
from visionfleet.checkpoints import open_store
from tests.helpers import read_output, relabel, visionfleet, wait_for_job, wait_until
from tests.photos import KNOWN, bad_inputs, distinct_jpegs, photo_bytes

pytestmark = pytest.mark.slow  # every test runs the CLI and real worker processes

RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672//"


def oss_reader(bucket):
    return lambda uri: bucket.get_object(uri.split("/", 3)[3]).read()


def test_known_photos_through_the_whole_path(bucket, fleet_env, workers):
    for name in KNOWN:
        bucket.put_object(f"in/{name}", photo_bytes(name))
    job_id = relabel(fleet_env, f"oss://{bucket.bucket_name}/in/", "--output", f"oss://{bucket.bucket_name}/out/")
    workers.start(1)  # a worker started after the job was enqueued picks it up
    status = wait_for_job(fleet_env, workers, job_id)
    assert (status["state"], status["total"], status["done"], status["errors"]) == ("succeeded", 3, 3, 0)
    summary, records = read_output(oss_reader(bucket), f"oss://{bucket.bucket_name}/out/{job_id}")
    assert (summary["total"], summary["ok"], summary["errors"], summary["model"]) == (3, 3, 0, "efficientnet_lite0")
    top1 = {r["uri"].rsplit("/", 1)[1]: r["labels"][0]["class_id"] for r in records}
    for name, classes in KNOWN.items():
        assert top1[name] in classes, (name, records)
    assert all(len(r["labels"]) == 5 and r["status"] == "ok" for r in records)


def test_thousand_images_two_workers_each_exactly_once(bucket, fleet_env, workers):
    images = distinct_jpegs(1000)
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda i: bucket.put_object(f"many/{i:04d}.jpg", images[i]), range(len(images))))
    workers.start(1)  # one before the job is enqueued, one after
    job_id = relabel(fleet_env, f"oss://{bucket.bucket_name}/many/", "--output",
                     f"oss://{bucket.bucket_name}/out/", "--shard-size", "50")
    workers.start(1)
    status = wait_for_job(fleet_env, workers, job_id, timeout=400)
    assert (status["state"], status["total"], status["done"], status["errors"]) == ("succeeded", 1000, 1000, 0)
    summary, records = read_output(oss_reader(bucket), f"oss://{bucket.bucket_name}/out/{job_id}")
    uris = [r["uri"] for r in records]
    expected = {f"oss://{bucket.bucket_name}/many/{i:04d}.jpg" for i in range(1000)}
    assert len(uris) == 1000 and set(uris) == expected
    assert (summary["total"], summary["ok"], summary["errors"]) == (1000, 1000, 0)
    assert len(summary["parts"]) >= 20  # 20 shards, each at least one part


def test_bad_inputs_get_error_records_and_the_job_succeeds(bucket, fleet_env, workers):
    bad = bad_inputs()
    for name, (data, _) in bad.items():
        if data is not None:
            bucket.put_object(f"mixed/{name}", data)
    bucket.put_object("mixed/chelsea.png", photo_bytes("chelsea.png"))
    names = [*bad, "chelsea.png"]
    manifest = "".join(f"oss://{bucket.bucket_name}/mixed/{n}\n" for n in names)
    bucket.put_object("lists/mixed.txt", manifest.encode())
    workers.start(1)
    # Nearly all are bad: accepted (--max-error-rate 1), so the job succeeds with their records.
    job_id = relabel(fleet_env, f"oss://{bucket.bucket_name}/lists/mixed.txt", "--output",
                     f"oss://{bucket.bucket_name}/out/", "--shard-size", "2", "--max-error-rate", "1")
    status = wait_for_job(fleet_env, workers, job_id)
    assert (status["state"], status["total"], status["errors"]) == ("succeeded", len(names), len(bad))
    summary, records = read_output(oss_reader(bucket), f"oss://{bucket.bucket_name}/out/{job_id}")
    assert {kind: e["count"] for kind, e in summary["error_kinds"].items()} == {
        "empty file": 1, "not an image": 1, "truncated": 1, "too large": 1, "not found": 1}  # the OSS 404 too
    by_name = {r["uri"].rsplit("/", 1)[1]: r for r in records}
    assert len(records) == len(names) == len(by_name)
    for name, (_, words) in bad.items():
        assert by_name[name]["status"] == "error", by_name[name]
        assert words.lower() in by_name[name]["error"].lower(), by_name[name]
    assert by_name["chelsea.png"]["status"] == "ok"


def test_missing_keys_stop_the_job_early_and_every_worker_on_it_stops(bucket, fleet_env, workers):
    """2,500 keys that are not there, in 10 shards, two workers: the job stops once its first 1,000
    records are all "not found"; the shards still running stop at their next commit, the queued ones
    are dropped, and what the summary lists is all the store counted."""
    manifest = "".join(f"oss://{bucket.bucket_name}/gone/{i:04d}.jpg\n" for i in range(2500))
    bucket.put_object("lists/gone.txt", manifest.encode())
    workers.start(2)
    result = visionfleet("relabel", f"oss://{bucket.bucket_name}/lists/gone.txt", "--output",
                         f"oss://{bucket.bucket_name}/out/", "--shard-size", "250", "--wait", env=fleet_env)
    assert result.returncode == 1, result.stderr
    job_id = result.stdout.strip().splitlines()[-1]
    status = json.loads(visionfleet("status", job_id, "--json", env=fleet_env).stdout)
    done = status["done"]
    assert (status["state"], status["ok"]) == ("failed", 0) and 1000 <= done < 2500, status
    assert status["reason"].startswith(f"stopped early: the first {done} records committed are all errors of one "
                                       f"kind, not found, e.g. cannot read oss://{bucket.bucket_name}/gone/"), status
    assert f"; {2500 - done} of 2500 inputs left unlabelled." in status["reason"]
    root = f"oss://{bucket.bucket_name}/out/{job_id}"
    summary = json.loads(bucket.get_object(f"out/{job_id}/_SUMMARY.json").read())
    assert (summary["state"], summary["errors"], summary["unlabelled"]) == ("failed", done, 2500 - done)
    assert not bucket.object_exists(f"out/{job_id}/_SUCCESS.json")

    def no_worker_on_it() -> bool:
        return json.loads(visionfleet("status", job_id, "--json", env=fleet_env).stdout)["workers"] == []

    wait_until(no_worker_on_it, 60, "the workers to leave the job")
    assert json.loads(visionfleet("status", job_id, "--json", env=fleet_env).stdout)["done"] == done
    records = [line for part in summary["parts"] for line in oss_reader(bucket)(f"{root}/{part}").splitlines()]
    assert len(records) == done and all(w.poll() is None for w in workers.procs)


@pytest.fixture
def rabbitmq():
    """The machine's RabbitMQ; the queues and exchanges the test creates there are deleted after it."""
    names = {"queues": ("bulk", "online"), "exchanges": ("bulk", "online", "celeryev", "celery.pidbox",
                                                          "reply.celery.pidbox")}

    def existing() -> dict[str, set[str]]:
        found = {"queues": set(), "exchanges": set()}
        with kombu.Connection(RABBITMQ_URL, connect_timeout=5) as conn:
            for kind, declare in (("queues", "queue_declare"), ("exchanges", "exchange_declare")):
                for name in names[kind]:
                    channel = conn.channel()  # a failed passive declare closes its channel
                    try:
                        if kind == "queues":
                            channel.queue_declare(name, passive=True)
                        else:
                            channel.exchange_declare(name, "direct", passive=True)
                        found[kind].add(name)
                    except amqp.exceptions.NotFound:
                        pass
        return found

    before = existing()
    yield RABBITMQ_URL
    after = existing()
    with kombu.Connection(RABBITMQ_URL, connect_timeout=5) as conn:
        channel = conn.channel()
        for name in after["queues"] - before["queues"]:
            channel.queue_delete(name)
        for name in after["exchanges"] - before["exchanges"]:
            channel.exchange_delete(name)


def test_rabbitmq_broker_with_redis_state(rabbitmq, bucket, fleet_env, workers, private_redis):
    """The same path with RabbitMQ carrying the messages and Redis the job state."""
    env = {**fleet_env, "VISIONFLEET_BROKER_URL": RABBITMQ_URL, "VISIONFLEET_STATE_URL": private_redis.url}
    workers.env = env
    bucket.put_object("in/coffee.png", photo_bytes("coffee.png"))
    workers.start(1)
    job_id = relabel(env, f"oss://{bucket.bucket_name}/in/", "--output", f"oss://{bucket.bucket_name}/out/")
    store = open_store(private_redis.url)
    wait_until(lambda: store.progress(job_id).state == "succeeded", 120, f"job on RabbitMQ; logs:\n{workers.logs()}")
    _, records = read_output(oss_reader(bucket), f"oss://{bucket.bucket_name}/out/{job_id}")
    assert [r["labels"][0]["class_id"] for r in records][0] in KNOWN["coffee.png"]


def test_bulk_job_can_use_the_dedup_cache(bucket, fleet_env, workers):
    data = photo_bytes("chelsea.png")
    for i in range(3):
        bucket.put_object(f"dup/{i}.png", data)  # three copies of the same bytes
    bucket.put_object("again/copy.png", data)
    workers.start(1)
    out = f"oss://{bucket.bucket_name}/out/"
    first = relabel(fleet_env, f"oss://{bucket.bucket_name}/dup/", "--output", out, "--cache")
    assert wait_for_job(fleet_env, workers, first)["state"] == "succeeded"
    metrics = redis.Redis.from_url(fleet_env["VISIONFLEET_BROKER_URL"])
    hits_before = int(metrics.hget("vf:metrics", "cache_hits") or 0)
    second = relabel(fleet_env, f"oss://{bucket.bucket_name}/again/", "--output", out, "--cache")
    assert wait_for_job(fleet_env, workers, second)["state"] == "succeeded"
    assert int(metrics.hget("vf:metrics", "cache_hits")) == hits_before + 1  # labelled once, by content
    _, records = read_output(oss_reader(bucket), f"oss://{bucket.bucket_name}/out/{second}")
    _, earlier = read_output(oss_reader(bucket), f"oss://{bucket.bucket_name}/out/{first}")
    assert records[0]["labels"] == earlier[0]["labels"]


def test_cancelled_job_is_not_run(bucket, fleet_env, workers):
    bucket.put_object("c/coffee.png", photo_bytes("coffee.png"))
    job_id = relabel(fleet_env, f"oss://{bucket.bucket_name}/c/", "--output", f"oss://{bucket.bucket_name}/out/")
    result = visionfleet("cancel", job_id, env=fleet_env)
    assert result.returncode == 0 and "cancelled" in result.stdout
    assert visionfleet("cancel", job_id, env=fleet_env).returncode == 2  # already ended
    (worker,) = workers.start(1)
    bulk_queue = redis.Redis.from_url(fleet_env["VISIONFLEET_BROKER_URL"])
    wait_until(lambda: bulk_queue.llen("bulk") == 0 and "cancelled" in workers.logs(), 60, "the message consumed")
    status = json.loads(visionfleet("status", job_id, "--json", env=fleet_env).stdout)
    assert (status["state"], status["done"]) == ("cancelled", 0)
    assert not bucket.object_exists(f"out/{job_id}/_SUCCESS.json")


def test_one_fleet_serves_an_fp32_job_and_an_int8_job(bucket, fleet_env, workers, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for path in make_photos(photos, 24, size=(640, 480)):
        bucket.put_object(f"mix/{path.name}", path.read_bytes())
    for name in KNOWN:
        bucket.put_object(f"mix/{name}", photo_bytes(name))
    workers.start(1, VISIONFLEET_CALIBRATION_SIZE="8")
    source, out = f"oss://{bucket.bucket_name}/mix/", f"oss://{bucket.bucket_name}/out/"
    jobs = {precision: relabel(fleet_env, source, "--output", out, "--precision", precision)
            for precision in ("fp32", "int8")}
    for precision, job_id in jobs.items():
        status = wait_for_job(fleet_env, workers, job_id)
        assert (status["state"], status["done"]) == ("succeeded", 27), status
        summary, records = read_output(oss_reader(bucket), f"{out}{job_id}")
        assert (summary["runtime"], summary["precision"]) == ("onnxruntime", precision)
        top1 = {r["uri"].rsplit("/", 1)[1]: r["labels"][0]["class_id"] for r in records}
        for name, classes in KNOWN.items():
            assert top1[name] in classes, (precision, name)
    assert summary["int8_agreement"] >= 0.98  # the int8 job, checked last
    assert "model artifact built" in workers.logs(tail=100_000)  # its int8 model, calibrated on its own images


def test_a_model_that_cannot_load_fails_the_job_within_a_minute_with_the_reason(bucket, fleet_env, workers, tmp_path):
    for name in KNOWN:
        bucket.put_object(f"in/{name}", photo_bytes(name))
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a TorchScript archive")
    allowed = {"VISIONFLEET_MODELS": f"nosuchmodel,torchscript:{corrupt}"}
    workers.start(1, **allowed)
    src, out = f"oss://{bucket.bucket_name}/in/", f"oss://{bucket.bucket_name}/out/"
    typo = visionfleet("relabel", src, "-o", out, "--model", "nosuchmodel", env={**fleet_env, **allowed}, timeout=60)
    assert typo.returncode == 2 and "unknown model 'nosuchmodel'" in typo.stderr, typo.stderr  # no worker needed
    assert open_store(fleet_env["VISIONFLEET_BROKER_URL"]).jobs(10) == []  # nothing planned
    result = visionfleet("relabel", src, "-o", out, "--model", f"torchscript:{corrupt}", "--wait",
                         env={**fleet_env, **allowed}, timeout=60)
    assert result.returncode == 1, result.stderr
    words = "failed to load 3 times: RuntimeError"
    assert words in result.stderr and "Traceback" not in result.stderr, result.stderr
    status = wait_for_job(fleet_env, workers, result.stdout.strip().splitlines()[-1], timeout=5)
    assert status["state"] == "failed" and words in status["reason"]


def test_an_fp16_job_on_a_worker_without_a_gpu_fails_fast_naming_the_cpu(bucket, fleet_env, workers):
    """The submitter is not the worker, so it cannot judge the workers' machines; a worker with no GPU
    fails the job before labelling anything, and the CPU is named where the user looks."""
    for name in KNOWN:
        bucket.put_object(f"in/{name}", photo_bytes(name))
    workers.start(1, VISIONFLEET_DEVICE="cpu")  # no GPU, on any machine
    result = visionfleet("relabel", f"oss://{bucket.bucket_name}/in/", "-o", f"oss://{bucket.bucket_name}/out/",
                         "--runtime", "torch", "--precision", "fp16", "--wait", env=fleet_env, timeout=90)
    words = "fp16 on a CPU runs about 20x slower than fp32"
    assert result.returncode == 1 and words in result.stderr and "Traceback" not in result.stderr, result.stderr
    job_id = result.stdout.strip().splitlines()[-1]
    status = wait_for_job(fleet_env, workers, job_id, timeout=5)
    assert (status["state"], status["done"]) == ("failed", 0) and words in status["reason"]
    assert "use --precision fp32" in visionfleet("status", job_id, env=fleet_env).stdout
    assert words in workers.logs()


def test_jobs_lists_recent_jobs_and_purge_removes_an_ended_one(bucket, fleet_env):
    bucket.put_object("j/coffee.png", photo_bytes("coffee.png"))
    src, out = f"oss://{bucket.bucket_name}/j/", f"oss://{bucket.bucket_name}/out/"
    first, second = relabel(fleet_env, src, "--output", out), relabel(fleet_env, src, "--output", out)
    listed = visionfleet("jobs", "--json", env=fleet_env)
    assert listed.returncode == 0, listed.stderr
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [(r["job_id"], r["state"], r["total"]) for r in rows[:2]] == [(second, "queued", 1), (first, "queued", 1)]
    assert 0 <= rows[0]["age_s"] < 60 and rows[0]["created_at"] >= rows[1]["created_at"]
    refused = visionfleet("purge", first, env=fleet_env)
    assert refused.returncode == 2 and f"cancel it first (`visionfleet cancel {first}`)" in refused.stderr
    assert visionfleet("cancel", first, env=fleet_env).returncode == 0
    assert visionfleet("purge", first, env=fleet_env).returncode == 0
    gone = visionfleet("status", first, env=fleet_env)
    assert gone.returncode == 2 and f"job {first} was purged at " in gone.stderr, gone.stderr
    assert f"`visionfleet resume {first} --output DEST` brings its state back" in gone.stderr
    assert [line.split()[0] for line in visionfleet("jobs", env=fleet_env).stdout.splitlines()] == [second]
    assert not [k for k in redis.Redis.from_url(fleet_env["VISIONFLEET_BROKER_URL"]).keys(f"vf:job:{first}*")]


def test_resume_leaves_a_cancelled_job_alone_unless_forced(bucket, fleet_env, workers):
    bucket.put_object("rc/coffee.png", photo_bytes("coffee.png"))
    out = f"oss://{bucket.bucket_name}/out/"
    job_id = relabel(fleet_env, f"oss://{bucket.bucket_name}/rc/", "--output", out)
    assert visionfleet("cancel", job_id, env=fleet_env).returncode == 0
    bulk_queue = redis.Redis.from_url(fleet_env["VISIONFLEET_BROKER_URL"])
    waiting = bulk_queue.llen("bulk")  # the relabel's own message: no worker has taken it
    refused = visionfleet("resume", job_id, "--output", out, "--wait", env=fleet_env)
    assert refused.returncode == 2, refused.stderr
    assert f"job {job_id} was cancelled (cancelled by `visionfleet cancel`); nothing was enqueued" in refused.stderr
    assert f"`visionfleet resume {job_id} --output {out} --force`" in refused.stderr
    assert "enqueued again" not in refused.stderr and bulk_queue.llen("bulk") == waiting
    assert json.loads(visionfleet("status", job_id, "--json", env=fleet_env).stdout)["state"] == "cancelled"

    forced = visionfleet("resume", job_id, "--output", out, "--force", env=fleet_env)
    assert forced.returncode == 0 and "1 shard enqueued again" in forced.stderr, forced.stderr
    assert json.loads(visionfleet("status", job_id, "--json", env=fleet_env).stdout)["state"] == "queued"
    workers.start(1)
    status = wait_for_job(fleet_env, workers, job_id)
    assert (status["state"], status["done"], status["ok"]) == ("succeeded", 1, 1)


def test_two_namespaces_share_one_redis_without_seeing_each_other(bucket, fleet_env, workers):
    bucket.put_object("ns/coffee.png", photo_bytes("coffee.png"))
    src, out = f"oss://{bucket.bucket_name}/ns/", f"oss://{bucket.bucket_name}/out/"
    staging, prod = ({**fleet_env, "VISIONFLEET_NAMESPACE": ns} for ns in ("staging", "prod"))
    workers.start(1, VISIONFLEET_NAMESPACE="staging")
    staged = relabel(staging, src, "--output", out, "--wait")
    waiting = relabel(prod, src, "--output", out)  # no prod worker: it stays queued
    assert json.loads(visionfleet("status", staged, "--json", env=staging).stdout)["state"] == "succeeded"
    assert json.loads(visionfleet("status", waiting, "--json", env=prod).stdout)["state"] == "queued"
    assert visionfleet("status", staged, env=prod).returncode == 2  # not prod's job
    assert [line.split()[0] for line in visionfleet("jobs", env=prod).stdout.splitlines()] == [waiting]
    assert visionfleet("drain", "--all", env=prod).returncode == 2  # no prod worker answers
    assert workers.procs[0].poll() is None  # staging's worker did not hear it
    r = redis.Redis.from_url(fleet_env["VISIONFLEET_BROKER_URL"])
    assert r.llen("prod:broker:prod.bulk") == 1 and r.llen("staging:broker:staging.bulk") == 0
    names = [k.decode() for k in r.keys("*") if not k.startswith(b"celery-task-meta-")]  # results: by task id
    assert names and all(n.startswith(("prod:", "staging:")) for n in names), names


def test_stats_count_the_bulk_path_and_workers_send_task_events(bucket, fleet_env, workers):
    for name in KNOWN:
        bucket.put_object(f"st/{name}", photo_bytes(name))
    workers.start(1)
    job_id = relabel(fleet_env, f"oss://{bucket.bucket_name}/st/", "--output", f"oss://{bucket.bucket_name}/out/",
                     "--wait")
    assert json.loads(visionfleet("status", job_id, "--json", env=fleet_env).stdout)["state"] == "succeeded"
    stats = json.loads(visionfleet("stats", "--json", env=fleet_env).stdout)
    counters = stats["counters"]
    assert (counters["bulk_images_ok"], counters["bulk_shards_done"]) == (len(KNOWN), 1)
    assert counters["bulk_commits"] >= 1 and stats["workers"]["live"] == 1
    table = visionfleet("stats", env=fleet_env).stdout
    assert f"bulk     images ok {len(KNOWN)}, images error 0" in table, table
    from visionfleet.broker.celery_app import make_app
    from visionfleet.broker.settings import BrokerSettings

    fleet = BrokerSettings(fleet_env["VISIONFLEET_BROKER_URL"], "", "", BrokerSettings.from_env().home)
    assert make_app(fleet).conf.worker_send_task_events  # Flower sees tasks

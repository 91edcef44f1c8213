"""One model version per job: a package is pinned when the job is planned, and every worker runs that copy.

Packages on the local OSS server (the real oss2 SDK) and in local folders; the job's store is SQLite.
"""
import json
import re
import logging

import pytest

from tests.helpers import read_output, relabel, visionfleet, wait_for_job
from tests.model_packages import colors_files, colour_jpeg, colors_json, put_package, write_files
from tests.photos import distinct_jpegs
from visionfleet.broker.planner import plan_job
from visionfleet.checkpoints import open_store
from visionfleet.pipeline import layout
from visionfleet.pipeline.access import Access
from visionfleet.pipeline.errors import ConfigError
from visionfleet.pipeline.job import Job, JobSpec
from visionfleet.pipeline.model_package import read_package
from visionfleet.pipeline.model_pin import PackageCache


@pytest.fixture
def images(tmp_path):
    (tmp_path / "in").mkdir()
    for i, data in enumerate(distinct_jpegs(3)):
        (tmp_path / "in" / f"{i}.jpg").write_bytes(data)
    return tmp_path / "in"


@pytest.fixture
def planned(tmp_path, images):
    """Plans a job of the three images with the package ``spec``: the job as a worker reads it."""
    store = open_store(f"sqlite:///{tmp_path / 'state.db'}")

    def plan(spec: str) -> Job:
        job_id = plan_job(JobSpec(source=str(images), output=str(tmp_path / "out"), model=spec), store,
                          lambda j, s: None)
        return Job.from_dict(store.job_meta(job_id))

    plan.store = store
    return plan


@pytest.fixture
def package(request, tmp_path, oss_settings, bucket):
    """A package of version 1 on OSS or in a local folder, and a way to replace it by version 2."""
    if request.param == "oss":
        spec = put_package(bucket, "models/colors", colors_files("1"))
        return spec, lambda: put_package(bucket, "models/colors", colors_files("2", inverted=True))
    spec = write_files(tmp_path / "models", colors_files("1"))
    return spec, lambda: write_files(tmp_path / "models", colors_files("2", inverted=True))


def pinned_uri(job: Job) -> str:
    return layout.pinned_model(job.root, "model.onnx")


@pytest.mark.parametrize("package", ["oss", "local"], indirect=True)
def test_planning_pins_the_package_and_a_worker_runs_that_copy_though_it_was_replaced(
        package, planned, tmp_path, caplog):
    spec, replace = package
    job = planned(spec)
    files = colors_files("1")
    pinned = tmp_path / "out" / job.job_id / "_plan" / "model"
    assert {p.name: p.read_bytes() for p in pinned.iterdir()} == files
    assert job.spec.model == spec and job.spec.model_digest == read_package(pinned / "model.onnx").content_digest()
    stored = json.loads((tmp_path / "out" / job.job_id / "_plan" / "job.json").read_text())
    assert stored["model_digest"] == job.spec.model_digest
    replace()  # mid-job: after planning, before any worker
    cache = PackageCache(tmp_path / "worker-cache")
    with caplog.at_level(logging.INFO, logger="visionfleet.pipeline.model_pin"):
        local = cache.local(pinned_uri(job), job.spec.model_digest)
        again = PackageCache(tmp_path / "worker-cache").local(pinned_uri(job), job.spec.model_digest)
    assert local == again == str(tmp_path / "worker-cache" / job.spec.model_digest / "model.onnx")
    assert open(local, "rb").read() == files["model.onnx"]
    assert json.loads((tmp_path / "worker-cache" / job.spec.model_digest / "model.json").read_text())["version"] == "1"
    messages = [r.getMessage() for r in caplog.records]
    assert messages.count("model package fetched") == 1  # the second process of the worker finds it
    assert messages.count("model package found in the cache") == 1
    second = planned(spec)  # a new job pins the package as it is now
    assert second.spec.model_digest != job.spec.model_digest


@pytest.mark.parametrize("package", ["local"], indirect=True)
def test_a_tampered_pinned_copy_is_refused_with_the_digest_mismatch(package, planned, tmp_path):
    job = planned(package[0])
    (tmp_path / "out" / job.job_id / "_plan" / "model" / "model.onnx").write_bytes(
        colors_files("2", inverted=True)["model.onnx"])
    with pytest.raises(ConfigError, match=f"fails its digest check .* the job was planned with "
                                          f"{job.spec.model_digest}.*start the job again"):
        PackageCache(tmp_path / "cache").local(pinned_uri(job), job.spec.model_digest)
    assert list((tmp_path / "cache").iterdir()) == []  # nothing kept of what failed the check
    (tmp_path / "out" / job.job_id / "_plan" / "model" / "model.json").unlink()
    with pytest.raises(ConfigError, match="pinned for this job .* cannot be read .*model.json"):
        PackageCache(tmp_path / "cache").local(pinned_uri(job), job.spec.model_digest)


@pytest.mark.parametrize("package", ["local"], indirect=True)
def test_a_damaged_cached_copy_is_fetched_again(package, planned, tmp_path, caplog):
    job = planned(package[0])
    cache = PackageCache(tmp_path / "cache")
    local = cache.local(pinned_uri(job), job.spec.model_digest)
    with open(local, "r+b") as f:
        f.write(b"\0\0\0\0")
    with caplog.at_level(logging.INFO, logger="visionfleet.pipeline.model_pin"):
        assert cache.local(pinned_uri(job), job.spec.model_digest) == local
    assert open(local, "rb").read() == colors_files("1")["model.onnx"]
    assert [r.getMessage() for r in caplog.records] == [
        "cached model package failed its digest check: fetching it again", "model package fetched"]


def test_a_labels_file_is_part_of_the_package_and_of_its_digest(planned, tmp_path):
    spec = write_files(tmp_path / "models", colors_files(labels_file="classes.txt"))
    job = planned(spec)
    pinned = tmp_path / "out" / job.job_id / "_plan" / "model"
    assert sorted(p.name for p in pinned.iterdir()) == ["classes.txt", "model.json", "model.onnx"]
    (tmp_path / "models" / "classes.txt").write_text("red\nblue\ngreen\n")
    assert planned(spec).spec.model_digest != job.spec.model_digest


def test_planning_refuses_a_package_it_cannot_read_or_that_is_wrong_and_writes_nothing(oss_settings, bucket, planned,
                                                                                       tmp_path):
    spec = write_files(tmp_path / "models", colors_files())
    (tmp_path / "models" / "model.json").unlink()
    missing = f"oss://{bucket.bucket_name}/models/none/model.onnx"
    no_model = put_package(bucket, "models/no-model", {"model.json": colors_files()["model.json"]})

    def on_oss(prefix: str, **changes) -> str:
        return put_package(bucket, prefix, {**colors_files(), "model.json": json.dumps(colors_json(**changes)).encode()})

    wrong_output = on_oss("models/wrong-output", **{"output.name": "scores"})
    outside = on_oss("models/outside", labels=None, labels_file="../../etc/passwd")
    for bad, words in ((spec, "model.json"), (missing, "models/none/model.json"),
                       (no_model, "models/no-model/model.onnx"),
                       (wrong_output, f"oss://{bucket.bucket_name}/models/wrong-output/model.json: output.name"),
                       (outside, 'labels_file is "../../etc/passwd"')):
        with pytest.raises(ConfigError, match=re.escape(words)):
            planned(bad)
    assert not (tmp_path / "out").exists()


def test_a_prefix_in_VISIONFLEET_MODELS_allows_the_packages_under_it(monkeypatch, tmp_path):
    monkeypatch.delenv("VISIONFLEET_LOCAL_ROOTS", raising=False)
    monkeypatch.setenv("VISIONFLEET_MODELS", f"oss://models/team/, {tmp_path}/models/, oss://other/one.onnx")
    monkeypatch.setenv("VISIONFLEET_OSS_BUCKETS", "models,photos")
    access = Access.from_env()
    for allowed in ("oss://models/team/colors/model.onnx", "oss://models/team/a/b/model.pt",
                    f"{tmp_path}/models/colors/model.onnx"):
        access.check_model(allowed)
    for refused in ("oss://models/teams/model.onnx", "oss://models/team/../secret/model.onnx",
                    "oss://models/model.onnx", f"{tmp_path}/models/../elsewhere/model.onnx",
                    f"{tmp_path}/models-other/model.onnx", f"{tmp_path}/models/./x/model.onnx",
                    "oss://other/one.pt"):
        with pytest.raises(ConfigError, match=re.escape(f"model {refused} is not allowed on this worker; add it to ")
                                                        + "VISIONFLEET_MODELS"):
            access.check_model(refused)
    with pytest.raises(ConfigError, match="bucket other is not allowed on this worker; add it to "
                                          "VISIONFLEET_OSS_BUCKETS"):
        access.check_model("oss://other/one.onnx")  # listed, but its bucket is not


COLOURS = {"red.jpg": (230, 20, 20), "green.jpg": (20, 230, 20), "blue.jpg": (20, 20, 230)}


def fleet_package(bucket, fleet_env) -> tuple[str, dict]:
    """The colours package (version 1) and three flat images on OSS; the fleet allows the models/ prefix."""
    for name, rgb in COLOURS.items():
        bucket.put_object(f"in/{name}", colour_jpeg(rgb))
    spec = put_package(bucket, "models/colors", colors_files("1"))
    return spec, {**fleet_env, "VISIONFLEET_MODELS": f"oss://{bucket.bucket_name}/models/"}


def package_digest(folder, files: dict[str, bytes]) -> str:
    return read_package(write_files(folder, files)).content_digest()


def top_labels(bucket, job_id: str) -> tuple[dict, dict]:
    """The job's summary, and each image's top label and model version."""
    summary, records = read_output(lambda uri: bucket.get_object(uri.split("/", 3)[3]).read(), f"oss://{bucket.bucket_name}/out/{job_id}")
    return summary, {r["uri"].rsplit("/", 1)[1]: (r["labels"][0]["label"], r["model_version"]) for r in records}


@pytest.mark.slow
def test_a_fleet_worker_fetches_the_pinned_package_once_and_runs_it_though_it_was_replaced(
        bucket, fleet_env, workers, tmp_path):
    spec, env = fleet_package(bucket, fleet_env)
    source, out = f"oss://{bucket.bucket_name}/in/", f"oss://{bucket.bucket_name}/out/"
    first, second = (relabel(env, source, "--output", out, "--model", spec) for _ in range(2))
    put_package(bucket, "models/colors", colors_files("2", inverted=True))  # replaced after planning
    cache = tmp_path / "worker-cache"
    workers.start(1, VISIONFLEET_MODELS=env["VISIONFLEET_MODELS"], VISIONFLEET_MODEL_CACHE=str(cache))
    digest = package_digest(tmp_path / "v1", colors_files("1"))
    for job_id in (first, second):
        assert wait_for_job(env, workers, job_id)["state"] == "succeeded"
        summary, labels = top_labels(bucket, job_id)
        assert summary["model_digest"] == digest
        assert labels == {"red.jpg": ("red", "1"), "green.jpg": ("green", "1"), "blue.jpg": ("blue", "1")}
    assert workers.logs(tail=1_000_000).count("model package fetched") == 1
    assert [p.name for p in (cache / "packages").iterdir()] == [digest]
    third = relabel(env, source, "--output", out, "--model", spec)  # a new job pins the package as it is now
    assert wait_for_job(env, workers, third)["state"] == "succeeded"
    summary, labels = top_labels(bucket, third)
    assert summary["model_digest"] == package_digest(tmp_path / "v2", colors_files("2", inverted=True))
    assert labels["red.jpg"] != ("red", "1") and {version for _, version in labels.values()} == {"2"}


@pytest.mark.slow
def test_a_fleet_worker_refuses_a_tampered_pinned_copy_and_the_job_fails_with_the_reason(
        bucket, fleet_env, workers, tmp_path):
    spec, env = fleet_package(bucket, fleet_env)
    job_id = relabel(env, f"oss://{bucket.bucket_name}/in/", "--output", f"oss://{bucket.bucket_name}/out/",
                     "--model", spec)
    bucket.put_object(f"out/{job_id}/_plan/model/model.onnx", colors_files("2", inverted=True)["model.onnx"])
    workers.start(1, VISIONFLEET_MODELS=env["VISIONFLEET_MODELS"], VISIONFLEET_MODEL_CACHE=str(tmp_path / "cache"))
    status = wait_for_job(env, workers, job_id)
    assert (status["state"], status["done"]) == ("failed", 0)
    assert f"model {spec} cannot run: the model package pinned for this job at oss://{bucket.bucket_name}/out/" \
           f"{job_id}/_plan/model fails its digest check" in status["reason"]
    assert not bucket.object_exists(f"out/{job_id}/_SUCCESS.json")


@pytest.mark.slow
def test_relabel_refuses_a_package_it_cannot_read_or_workers_would_not_load(bucket, fleet_env):
    spec, env = fleet_package(bucket, fleet_env)
    bucket.put_object("elsewhere/colors/model.onnx", colors_files()["model.onnx"])
    bucket.put_object("models/lacking/model.onnx", colors_files()["model.onnx"])
    name = bucket.bucket_name
    for model, words in ((f"oss://{name}/elsewhere/colors/model.onnx", "is not allowed on this worker; add it to "
                                                                        "VISIONFLEET_MODELS"),
                         (f"oss://{name}/models/none/model.onnx", f"oss://{name}/models/none/model.json"),
                         (f"oss://{name}/models/lacking/model.onnx", f"oss://{name}/models/lacking/model.json")):
        result = visionfleet("relabel", f"oss://{name}/in/", "--output", f"oss://{name}/out/", "--model", model,
                             env=env)
        assert result.returncode == 2 and words in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
    assert not list(bucket.list_objects(prefix="out/").object_list)


def test_a_package_on_oss_that_no_job_pinned_is_fetched_checked_and_served(oss_settings, bucket, tmp_path):
    """A model an online request names (or a worker's own): the version on OSS when it loads, from a local copy."""
    from visionfleet.pipeline.engines import RuntimeSettings
    from visionfleet.pipeline.labeller import LoadSettings
    from visionfleet.workers.labeller_pool import LabellerPool

    spec = put_package(bucket, "models/online", colors_files("7"))
    pool = LabellerPool(RuntimeSettings(model_cache=str(tmp_path / "cache"), threads=1, max_batch_size=4),
                        LoadSettings(io_threads=2), "test")
    (tmp_path / "red.jpg").write_bytes(colour_jpeg((250, 5, 5)))
    labeller = pool.default(spec)
    try:
        (record,) = labeller.label([str(tmp_path / "red.jpg")], k=1)
    finally:
        labeller.close()
    assert (record["labels"][0]["label"], record["model_version"]) == ("red", "7")
    assert [p.name for p in (tmp_path / "cache" / "packages").iterdir()] == [read_package(
        write_files(tmp_path / "copy", colors_files("7"))).content_digest()]  # kept under its digest, no temp left
    bucket.put_object("models/online/model.json", b"{}")
    with pytest.raises(ConfigError, match=r"oss://.*/models/online/model.json: labels is missing; give the class names"):
        PackageCache(tmp_path / "other").current(spec)

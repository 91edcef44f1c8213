"""Trust boundaries: what a message may make a worker do (models, local folders, buckets, sizes)."""
import importlib.metadata
import json
import os

import pytest

from tests.helpers import embedded_env, visionfleet, wait_for_job
from tests.photos import photo_bytes
from visionfleet.pipeline.access import MAX_URI_BYTES, Access
from visionfleet.pipeline.errors import ConfigError, InputError
from visionfleet.pipeline.job import JobSpec
from visionfleet.pipeline.model_loader import WEIGHTS_PACKAGE
from visionfleet.pipeline.storage.local import LocalStorage

BUILT_IN_VERSION = importlib.metadata.version(WEIGHTS_PACKAGE)  # the version records of the built-in model name


@pytest.fixture
def clean_access_env(monkeypatch):
    for name in ("VISIONFLEET_MODELS", "VISIONFLEET_MODEL", "VISIONFLEET_LOCAL_ROOTS", "VISIONFLEET_OSS_BUCKETS"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_by_default_a_worker_loads_the_built_in_model_and_touches_no_local_path(clean_access_env, tmp_path):
    access = Access.from_env()
    access.check_model("efficientnet_lite0")
    with pytest.raises(ConfigError, match="model subprocess:getoutput is not allowed on this worker; add it to "
                                          "VISIONFLEET_MODELS"):
        access.check_model("subprocess:getoutput")
    with pytest.raises(InputError, match="outside the folders workers may use; add its folder to "
                                         "VISIONFLEET_LOCAL_ROOTS"):
        access.check_uri("/etc/passwd")
    access.check_uri("oss://any-bucket/k.jpg")
    with pytest.raises(InputError, match=f"over the bound of {MAX_URI_BYTES}"):
        access.check_uri("oss://b/" + "k" * MAX_URI_BYTES)


def test_settings_widen_and_narrow_what_is_allowed(clean_access_env, tmp_path):
    (tmp_path / "in").mkdir()
    os.symlink("/etc", tmp_path / "in" / "escape")
    clean_access_env.setenv("VISIONFLEET_MODELS", "pkg.mod:build, torchscript:/m.pt")
    clean_access_env.setenv("VISIONFLEET_MODEL", "torchscript:/default.pt")
    clean_access_env.setenv("VISIONFLEET_LOCAL_ROOTS", f"{tmp_path / 'in'}{os.pathsep}/srv/out")
    clean_access_env.setenv("VISIONFLEET_OSS_BUCKETS", "photos")
    access = Access.from_env()
    for spec in ("pkg.mod:build", "torchscript:/m.pt", "torchscript:/default.pt", "efficientnet_lite0"):
        access.check_model(spec)
    access.check_uri(str(tmp_path / "in" / "a.jpg"))
    access.check_uri(str(tmp_path / "in" / "sub" / ".." / "b.jpg"))
    for outside in (str(tmp_path / "in" / ".." / "x.jpg"), str(tmp_path / "in-other" / "a.jpg"),
                    str(tmp_path / "in" / "escape" / "passwd")):  # a symlink out of a root is out
        with pytest.raises(InputError, match="VISIONFLEET_LOCAL_ROOTS"):
            access.check_uri(outside)
    access.check_uri("oss://photos/k.jpg")
    with pytest.raises(InputError, match="bucket secrets is not allowed on this worker; add it to "
                                         "VISIONFLEET_OSS_BUCKETS"):
        access.check_uri("oss://secrets/k.jpg")
    with pytest.raises(ConfigError, match="VISIONFLEET_OSS_BUCKETS"):
        access.check_place("oss://secrets/out/")


def test_an_embedded_run_may_use_what_its_own_job_names(clean_access_env, tmp_path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "list.txt").write_text("a.jpg\n")
    job = JobSpec(model="torchscript:/m.pt", source=str(tmp_path / "list.txt"), output=str(tmp_path / "out" / "j"))
    access = Access.from_env().for_job(job)
    access.check_model("torchscript:/m.pt")
    access.check_uri(str(tmp_path / "a.jpg"))  # beside the manifest
    access.check_uri(str(tmp_path / "out" / "j" / "part-1.jsonl"))
    with pytest.raises(InputError):
        access.check_uri("/etc/passwd")


def test_a_job_fills_only_what_the_settings_leave_unset_and_reads_no_environment(clean_access_env, tmp_path):
    clean_access_env.setenv("VISIONFLEET_MODELS", "pkg.mod:build")
    access = Access.from_env()  # the edge
    clean_access_env.setenv("VISIONFLEET_LOCAL_ROOTS", "/srv")  # too late: a job never reads it
    job = JobSpec(model="torchscript:/m.pt", source=str(tmp_path / "in"), output=str(tmp_path / "out" / "j"))
    widened = access.for_job(job)
    for spec in ("pkg.mod:build", "efficientnet_lite0"):
        widened.check_model(spec)
    with pytest.raises(ConfigError, match="add it to VISIONFLEET_MODELS"):
        widened.check_model("torchscript:/m.pt")  # the models were set: the job's own is not added
    widened.check_uri(str(tmp_path / "out" / "j" / "part-1.jsonl"))  # the roots were unset: the job's folders
    with pytest.raises(InputError, match="VISIONFLEET_LOCAL_ROOTS"):
        widened.check_uri("/srv/a.jpg")
    with pytest.raises(InputError, match="VISIONFLEET_LOCAL_ROOTS"):
        access.check_uri(str(tmp_path / "out" / "j" / "part-1.jsonl"))  # widened for the job only


@pytest.mark.slow
def test_relabel_refuses_what_workers_would_before_anything_is_written(fleet_env, tmp_path):
    (tmp_path / "photos").mkdir()
    out = tmp_path / "out"
    result = visionfleet("relabel", "oss://b/in/", "-o", "oss://b/out/", "--model", "subprocess:getoutput",
                         env=fleet_env)
    assert result.returncode == 2 and "model subprocess:getoutput is not allowed" in result.stderr
    result = visionfleet("relabel", str(tmp_path / "photos"), "-o", str(out), env=fleet_env)
    assert result.returncode == 2 and "add its folder to VISIONFLEET_LOCAL_ROOTS" in result.stderr
    assert "Traceback" not in result.stderr and not out.exists()


@pytest.mark.slow
def test_a_manifest_line_of_10_mb_fails_planning_with_its_line_number(tmp_path):
    manifest = tmp_path / "list.txt"
    manifest.write_text("a.jpg\n" + "x" * 10_000_000 + "\nb.jpg\n")
    env = embedded_env(tmp_path)
    result = visionfleet("relabel", str(manifest), "-o", str(tmp_path / "out"), "--wait", env=env, timeout=120)
    assert result.returncode == 2, result.stderr
    assert f"list.txt, line 2: longer than {MAX_URI_BYTES} bytes" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_workers_refuse_a_job_outside_their_settings_and_import_nothing(bucket, fleet_env, workers, tmp_path):
    """A job the CLI allowed (its own environment says so) meets workers that do not allow it."""
    bucket.put_object("in/coffee.png", photo_bytes("coffee.png"))
    tripwire = tmp_path / "imported"
    workers.start(1, VISIONFLEET_TEST_TRIPWIRE=str(tripwire))
    src, out = f"oss://{bucket.bucket_name}/in/", f"oss://{bucket.bucket_name}/out/"
    cli = {**fleet_env, "VISIONFLEET_MODELS": "tests.tripwire_model:build",
           "VISIONFLEET_LOCAL_ROOTS": str(tmp_path)}
    job = visionfleet("relabel", src, "-o", out, "--model", "tests.tripwire_model:build", env=cli).stdout.split()[-1]
    status = wait_for_job(fleet_env, workers, job, timeout=60)
    assert status["state"] == "failed"
    assert "model tests.tripwire_model:build is not allowed on this worker" in status["reason"]
    assert not tripwire.exists()

    local = tmp_path / "labels"
    job = visionfleet("relabel", src, "-o", str(local), env=cli).stdout.split()[-1]
    status = wait_for_job(fleet_env, workers, job, timeout=60)
    assert status["state"] == "failed" and "VISIONFLEET_LOCAL_ROOTS" in status["reason"]
    assert sorted(p.name for p in (local / job).iterdir()) == ["_plan"]  # the planner's; the worker wrote nothing


@pytest.mark.slow
def test_an_online_request_for_a_local_file_gets_an_error_record_without_a_read(fleet_env, workers):
    (proc,) = workers.start(1, queues="online")
    result = visionfleet("classify", "/etc/passwd", "oss://b/" + "k" * MAX_URI_BYTES, "--timeout", "60",
                         env=fleet_env)
    assert result.returncode == 0, result.stderr
    passwd, long = [json.loads(line) for line in result.stdout.splitlines()]
    assert passwd == {"uri": "/etc/passwd", "status": "error", "error": "/etc/passwd is outside the folders "
                      "workers may use; add its folder to VISIONFLEET_LOCAL_ROOTS", "labels": None,
                      "model": "efficientnet_lite0", "model_version": BUILT_IN_VERSION}
    assert "bytes" not in passwd["error"].split("use;")[0]  # nothing about the file itself
    assert long["status"] == "error" and f"over the bound of {MAX_URI_BYTES}" in long["error"]


@pytest.mark.slow
def test_a_manifest_that_is_not_text_is_refused_with_its_line(tmp_path):
    manifest = tmp_path / "list.txt"
    manifest.write_bytes(b"a.jpg\n\x89PNG\r\n\x1a\n\x00\xff")
    result = visionfleet("relabel", str(manifest), "-o", str(tmp_path / "out"), env=embedded_env(tmp_path))
    assert result.returncode == 2 and "list.txt, line 2: not UTF-8 text" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


@pytest.fixture
def link_then_up(tmp_path):
    """``r/l`` links to ``etc/ssl``, so ``r/l/../shadow`` is ``etc/shadow`` to the kernel, outside ``r``."""
    (tmp_path / "etc" / "ssl").mkdir(parents=True)
    (tmp_path / "etc" / "shadow").write_text("root:*:20228:0:99999:7:::\n")
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "l").symlink_to(tmp_path / "etc" / "ssl")
    (tmp_path / "r" / "shadow").write_bytes(photo_bytes("coffee.png"))  # what `..` as text would open instead
    return tmp_path


def test_a_link_then_dotdot_is_checked_as_the_kernel_resolves_it(clean_access_env, link_then_up):
    clean_access_env.setenv("VISIONFLEET_LOCAL_ROOTS", str(link_then_up / "r"))
    access = Access.from_env()
    with pytest.raises(InputError, match="outside the folders workers may use"):
        access.check_uri(str(link_then_up / "r" / "l" / ".." / "shadow"))
    assert access.check_uri(str(link_then_up / "r" / "x" / ".." / "shadow")) == str(link_then_up / "r" / "shadow")


def test_a_checked_file_is_read_only_if_it_is_still_the_file_checked(clean_access_env, link_then_up):
    """What the check resolved is opened with no link at its end, and only if the kernel opens that path."""
    clean_access_env.setenv("VISIONFLEET_LOCAL_ROOTS", str(link_then_up / "r"))
    (link_then_up / "r" / "in").mkdir()
    (link_then_up / "r" / "in" / "a.jpg").write_bytes(b"checked")
    access, storage = Access.from_env(), LocalStorage()
    real = access.check_uri(str(link_then_up / "r" / "in" / "a.jpg"))
    assert storage.read(real, nofollow=True) == b"checked"
    (link_then_up / "r" / "in" / "a.jpg").unlink()  # swapped for a link after the check
    (link_then_up / "r" / "in" / "a.jpg").symlink_to(link_then_up / "etc" / "shadow")
    with pytest.raises(InputError, match="replaced by a link while it was being opened"):
        storage.read(real, nofollow=True)
    (link_then_up / "r" / "in").rename(link_then_up / "r" / "was-in")  # a folder on the path swapped
    (link_then_up / "r" / "in").symlink_to(link_then_up / "r" / "l" / "..")
    (link_then_up / "etc" / "a.jpg").write_text("root:*:20228\n")
    with pytest.raises(InputError, match="was replaced while it was being opened") as refused:
        storage.read(real, nofollow=True)
    assert "20228" not in str(refused.value)


@pytest.mark.slow
def test_a_link_then_dotdot_is_refused_online_and_in_a_manifest_without_a_read(fleet_env, workers, link_then_up):
    workers.start(1, queues="online", VISIONFLEET_LOCAL_ROOTS=str(link_then_up / "r"))
    sneaky = str(link_then_up / "r" / "l" / ".." / "shadow")
    result = visionfleet("classify", sneaky, "--timeout", "60", env=fleet_env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"uri": sneaky, "status": "error", "error": f"{sneaky} is outside the "
                                         "folders workers may use; add its folder to VISIONFLEET_LOCAL_ROOTS",
                                         "labels": None, "model": "efficientnet_lite0",
                                         "model_version": BUILT_IN_VERSION}

    (link_then_up / "r" / "list.txt").write_text("l/../shadow\nshadow\n")  # relative to the manifest
    result = visionfleet("relabel", str(link_then_up / "r" / "list.txt"), "-o", str(link_then_up / "r" / "out"),
                         "--all-files", "--wait", env=embedded_env(link_then_up), timeout=240)
    assert result.returncode == 0, result.stderr
    root = link_then_up / "r" / "out" / result.stdout.split()[-1]
    records = {r["uri"]: r for p in root.glob("part-*.jsonl") for r in map(json.loads, p.read_text().splitlines())}
    assert "outside the folders workers may use" in records[sneaky]["error"]
    assert records[str(link_then_up / "r" / "shadow")]["status"] == "ok"
    assert all("root:" not in p.read_text() for p in root.rglob("*") if p.is_file())

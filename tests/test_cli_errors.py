"""User mistakes and servers that are down: one line naming the fix, exit 2, no traceback."""
import os

import pytest
import redis

from tests.helpers import embedded_env, free_port, visionfleet

pytestmark = pytest.mark.slow  # every test runs the CLI in a subprocess


def assert_clean_error(result, *phrases: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    for phrase in phrases:
        assert phrase in result.stderr, result.stderr


def test_an_output_that_is_a_file_is_refused_before_planning(tmp_path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "labels.txt").write_text("not a folder")
    env = embedded_env(tmp_path)
    result = visionfleet("relabel", str(tmp_path / "photos"), "-o", str(tmp_path / "labels.txt"), env=env)
    assert_clean_error(result, "labels.txt is a file; give a folder")
    result = visionfleet("relabel", str(tmp_path / "photos"), "-o", str(tmp_path / "labels.txt" / "sub"), env=env)
    assert_clean_error(result, "labels.txt/sub: ", "labels.txt is a file; give a folder")
    assert not (tmp_path / "home" / "state.db").exists()  # nothing was planned


def test_a_redis_that_does_not_answer_is_named_with_its_password_hidden(tmp_path):
    env = {**embedded_env(tmp_path), "VISIONFLEET_BROKER_URL": f"redis://:s3cret@127.0.0.1:{free_port()}/0",
           "VISIONFLEET_LOCAL_ROOTS": str(tmp_path)}
    (tmp_path / "photos").mkdir()
    for args in (["status", "some-job"], ["relabel", str(tmp_path / "photos"), "-o", str(tmp_path / "out")],
                 ["stats"], ["classify", "x.jpg", "--timeout", "2"], ["drain", "--all"]):
        result = visionfleet(*args, env=env, timeout=60)
        assert_clean_error(result, "cannot reach", "redis://:***@127.0.0.1")
        assert "s3cret" not in result.stderr


def test_a_broker_that_does_not_answer_stops_relabel_before_a_job_exists(tmp_path, redis_url):
    jobs = redis.Redis.from_url(redis_url)
    before = set(jobs.scan_iter("vf:job:*"))
    (tmp_path / "photos").mkdir()
    env = {**embedded_env(tmp_path), "VISIONFLEET_BROKER_URL": f"amqp://guest:guest@127.0.0.1:{free_port()}//",
           "VISIONFLEET_STATE_URL": redis_url, "VISIONFLEET_LOCAL_ROOTS": str(tmp_path)}
    result = visionfleet("relabel", str(tmp_path / "photos"), "-o", str(tmp_path / "out"), env=env, timeout=60)
    assert_clean_error(result, "cannot reach the broker at amqp://guest:***@127.0.0.1")
    assert set(jobs.scan_iter("vf:job:*")) == before


def test_a_model_no_worker_could_load_is_refused_before_anything_is_written(tmp_path, photos):
    env, dest = embedded_env(tmp_path), tmp_path / "labels"
    typo = ("unknown model 'efficientnet_lite1' (did you mean efficientnet_lite0?)",
            "built-in models: efficientnet_lite0", "torchscript:/path/model.pt or package.module:factory")
    for args, extra in [(("--model", "efficientnet_lite1"), {}), ((), {"VISIONFLEET_MODEL": "efficientnet_lite1"})]:
        assert_clean_error(visionfleet("relabel", str(photos), "-o", str(dest), *args, env={**env, **extra}), *typo)
    photo = str(sorted(photos.iterdir())[0])
    assert_clean_error(visionfleet("classify", photo, env={**env, "VISIONFLEET_MODEL": "efficientnet_lite1"}), *typo)
    missing = tmp_path / "nope.pt"  # embedded: the workers run here, so their file is this machine's
    assert_clean_error(visionfleet("relabel", str(photos), "-o", str(dest), "--model", f"torchscript:{missing}",
                                   env=env), f"TorchScript model file {missing} does not exist")
    assert not dest.exists()  # no DEST, no job folder, no _plan/
    assert not (tmp_path / "home" / "state.db").exists()  # nothing was planned


def test_fp16_on_a_cpu_is_refused_before_planning_naming_the_cpu_and_the_slowdown(tmp_path, photos):
    env, dest = {**embedded_env(tmp_path), "VISIONFLEET_DEVICE": "cpu"}, tmp_path / "labels"  # CPU on any machine
    for args in (("--precision", "fp16"), ("--runtime", "torch", "--precision", "fp16")):
        result = visionfleet("relabel", str(photos), "-o", str(dest), *args, env=env)
        assert_clean_error(result, "fp16 on a CPU runs about 20x slower than fp32", "no CUDA GPU",
                           "use --precision fp32 (or int8)")
    photo = str(sorted(photos.iterdir())[0])
    assert_clean_error(visionfleet("classify", photo, env={**env, "VISIONFLEET_PRECISION": "fp16"}),
                       "fp16 on a CPU runs about 20x slower")
    assert not dest.exists() and not (tmp_path / "home" / "state.db").exists()


def test_a_calibration_typed_for_a_job_that_is_not_int8_is_refused(tmp_path, photos):
    env, dest = embedded_env(tmp_path), tmp_path / "labels"
    result = visionfleet("relabel", str(photos), "-o", str(dest), "--precision", "fp32", "--calibration", str(photos),
                         env=env)
    assert_clean_error(result, "--calibration is used by int8 only, and this job runs fp32", "--precision int8")
    assert not dest.exists()
    (tmp_path / "empty").mkdir()  # VISIONFLEET_CALIBRATION is the workers' setting too: not the job's mistake
    result = visionfleet("relabel", str(tmp_path / "empty"), "-o", str(dest), "--precision", "fp32", "--allow-empty",
                         env={**env, "VISIONFLEET_CALIBRATION": str(photos)}, timeout=120)
    assert result.returncode == 0, result.stderr


@pytest.mark.skipif(os.path.exists("/proc/driver/nvidia/version"), reason="this machine has an NVIDIA driver")
def test_a_cuda_device_on_a_machine_without_one_is_refused_before_planning(tmp_path, photos):
    env, dest = {**embedded_env(tmp_path), "VISIONFLEET_DEVICE": "cuda"}, tmp_path / "labels"
    words = ("VISIONFLEET_DEVICE=cuda, but this machine has no NVIDIA driver", "set VISIONFLEET_DEVICE=auto or cpu")
    assert_clean_error(visionfleet("relabel", str(photos), "-o", str(dest), env=env), *words)
    assert_clean_error(visionfleet("classify", str(sorted(photos.iterdir())[0]), env=env), *words)
    assert_clean_error(visionfleet("worker", "-Q", "bulk", env=env, timeout=60), *words)
    assert not dest.exists() and not (tmp_path / "home" / "state.db").exists()

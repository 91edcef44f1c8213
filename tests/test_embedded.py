"""The embedded default, as the README runs it: no broker, no server."""
import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from bench.e2e_bench import make_photos
from bench.samples import PHOTOS, bundled
from tests.helpers import embedded_env, linked_photos, visionfleet
from tests.photos import KNOWN
from visionfleet.checkpoints import open_store

pytestmark = pytest.mark.slow  # every test runs the CLI, most with its embedded workers


def test_relabel_sample_photos_with_no_server(tmp_path, photos):
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    env = embedded_env(tmp_path, shared_model_cache=False)
    result = visionfleet("relabel", str(photos), "--output", str(tmp_path / "labels"), "--wait",
                         env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    job_id = result.stdout.strip().splitlines()[-1]
    root = tmp_path / "labels" / job_id
    summary = json.loads((root / "_SUCCESS.json").read_text())
    assert (summary["total"], summary["ok"], summary["errors"]) == (len(PHOTOS) + 1, len(PHOTOS), 1)
    records = [json.loads(line) for part in summary["parts"] for line in (root / part).read_text().splitlines()]
    by_name = {r["uri"].rsplit("/", 1)[1]: r for r in records}
    assert len(by_name) == len(records) == len(PHOTOS) + 1
    for name, classes in KNOWN.items():
        assert by_name[name]["labels"][0]["class_id"] in classes
    assert by_name["broken.jpg"]["status"] == "error"
    assert (summary["runtime"], summary["precision"]) == ("onnxruntime", "fp32")  # auto, on a CPU
    assert list((tmp_path / "home" / "models").glob("efficientnet_lite0-fp32-*.onnx"))  # the default cache

    assert sorted(p.name for p in tmp_path.iterdir()) == ["home", "labels", "photos"]  # nothing else in cwd
    # Its workers are gone with it, and so is their trace in the state.
    assert processes_with(f"VISIONFLEET_HOME={tmp_path / 'home'}") == []
    assert open_store(f"sqlite:///{tmp_path / 'home' / 'state.db'}").workers() == []

    status = visionfleet("status", job_id, "--json", env=env)
    assert status.returncode == 0, status.stderr
    got = json.loads(status.stdout)
    assert (got["state"], got["total"], got["done"], got["errors"]) == ("succeeded", 9, 9, 1)


def processes_with(variable: str) -> list[int]:
    """Live processes (zombies aside) whose environment has ``variable`` (NAME=value)."""
    from visionfleet.workers.heartbeat import proc_stat

    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if variable.encode() in environ and (proc_stat(entry.name) or ["Z"])[0] != "Z":
            found.append(int(entry.name))
    return found


def test_config_errors_name_the_fix(tmp_path):
    env = embedded_env(tmp_path)
    result = visionfleet("relabel", "oss://bucket/in/", "--output", str(tmp_path / "out"), env=env)
    assert result.returncode == 2
    assert "OSS_ENDPOINT is not set; set it to your region's endpoint" in result.stderr
    assert "Traceback" not in result.stderr

    env["VISIONFLEET_BROKER_URL"] = "kafka://nope"
    result = visionfleet("status", "x", env=env)
    assert result.returncode == 2 and "VISIONFLEET_BROKER_URL has an unsupported scheme" in result.stderr

    env["VISIONFLEET_BROKER_URL"] = "amqp://guest:guest@127.0.0.1:5672//"
    result = visionfleet("status", "x", env=env)
    assert result.returncode == 2 and "VISIONFLEET_STATE_URL is not set" in result.stderr


def test_unknown_job_status(tmp_path):
    result = visionfleet("status", "no-such-job", env=embedded_env(tmp_path))
    assert result.returncode == 2 and "no job 'no-such-job'" in result.stderr


def test_resume_rebuilds_a_lost_embedded_state(tmp_path, photos):
    import shutil

    env = embedded_env(tmp_path)
    first = visionfleet("relabel", str(photos), "--output", str(tmp_path / "labels"), env=env)
    assert first.returncode == 0, first.stderr
    job_id = first.stdout.strip().splitlines()[-1]
    summary = json.loads((tmp_path / "labels" / job_id / "_SUCCESS.json").read_text())
    shutil.rmtree(tmp_path / "home")  # the state file is gone; the output folder is not
    again = visionfleet("resume", job_id, "--output", str(tmp_path / "labels"), env=env)
    assert again.returncode == 0, again.stderr
    assert "0 shards enqueued again" in again.stderr  # nothing redone
    rebuilt = json.loads((tmp_path / "labels" / job_id / "_SUCCESS.json").read_text())
    assert (rebuilt["total"], rebuilt["ok"], rebuilt["parts"]) == (summary["total"], summary["ok"], summary["parts"])
    status = json.loads(visionfleet("status", job_id, "--json", env=env).stdout)
    assert status["state"] == "succeeded" and status["done"] == len(PHOTOS)


def test_int8_job_calibrates_on_its_own_images_and_keeps_the_known_answers(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    make_photos(photos, 40, size=(640, 480))
    for name in KNOWN:
        shutil.copyfile(bundled(name), photos / name)
    env = {**embedded_env(tmp_path), "VISIONFLEET_CALIBRATION_SIZE": "16"}
    result = visionfleet("relabel", str(photos), "--output", str(tmp_path / "labels"), "--precision", "int8",
                         "--wait", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    root = tmp_path / "labels" / result.stdout.strip().splitlines()[-1]
    summary = json.loads((root / "_SUCCESS.json").read_text())
    assert (summary["runtime"], summary["precision"], summary["ok"]) == ("onnxruntime", "int8", 43)
    assert summary["int8_agreement"] >= 0.98 and summary["engines"][0]["int8_held_out"] == 16
    records = [json.loads(line) for part in summary["parts"] for line in (root / part).read_text().splitlines()]
    top1 = {r["uri"].rsplit("/", 1)[1]: r["labels"][0]["class_id"] for r in records}
    for name, classes in KNOWN.items():
        assert top1[name] in classes, name


def test_int8_job_below_the_accuracy_gate_fails_and_says_why(tmp_path, photos):
    calibration = tmp_path / "calibration"  # calibrated on black frames, gated on photos
    calibration.mkdir()
    for i, name in enumerate(("astronaut.png", "rocket.jpg", "motorcycle_left.png", "horse.png")):
        Image.new("RGB", (64, 64)).save(calibration / f"{i}a-black.png")
        shutil.copyfile(bundled(name), calibration / f"{i}b-{name}")
    env = {**embedded_env(tmp_path), "VISIONFLEET_CALIBRATION": str(calibration)}
    result = visionfleet("relabel", str(photos), "--output", str(tmp_path / "labels"),
                         "--precision", "int8", "--wait", env=env, cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert "failed" in result.stderr and "below VISIONFLEET_INT8_MIN_AGREEMENT=0.98" in result.stderr
    assert "Traceback" not in result.stderr
    status = json.loads(visionfleet("status", result.stdout.strip().splitlines()[-1], "--json", env=env).stdout)
    assert status["state"] == "failed" and "held-out images" in status["reason"]


def test_an_engine_no_machine_runs_is_refused_before_anything_is_enqueued(tmp_path, photos):
    env = embedded_env(tmp_path)
    for args, words in [(("--runtime", "onnxruntime", "--precision", "bf16"), "precision bf16 does not run on "
                         "onnxruntime"), (("--precision", "int8", "--calibration", str(tmp_path / "nope")),
                                          "calibration source"), (("--runtime", "tensorrt"), "Invalid value")]:
        result = visionfleet("relabel", str(photos), "--output", str(tmp_path / "labels"), *args,
                             env=env)
        assert result.returncode == 2 and words in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
    assert not (tmp_path / "labels").exists()


def test_a_plug_in_is_left_to_its_factory_even_at_fp16_on_a_cpu(tmp_path, photos):
    """What cannot be judged before it loads is not refused: a plug-in runs as its factory builds it."""
    env = {**embedded_env(tmp_path), "VISIONFLEET_DEVICE": "cpu"}
    result = visionfleet("relabel", str(photos), "--output", str(tmp_path / "labels"), "--model",
                         "tests.slow_model:build", "--precision", "fp16", "--wait", env=env, timeout=120)
    assert result.returncode == 0 and "succeeded" in result.stderr, result.stderr


def test_a_worker_with_a_bad_setting_exits_2_without_reporting_ready(tmp_path):
    for queues in ("bulk", "online", "online,bulk"):
        for name, value, words in [("VISIONFLEET_MAX_BATCH_SIZE", "abc", "is not a whole number"),
                                   ("VISIONFLEET_PRECISION", "int4", "is not one of"),
                                   ("VISIONFLEET_SPOT_POLL_S", "often", "is not a number"),
                                   ("VISIONFLEET_DECODE", "nvjpeg", "is not one of")]:
            result = visionfleet("worker", "-Q", queues, env={**embedded_env(tmp_path), name: value}, timeout=60)
            assert result.returncode == 2, (queues, name, result.stderr)
            assert f"error: {name}={value!r} {words}" in result.stderr and "ready" not in result.stderr
    env = {**embedded_env(tmp_path), "VISIONFLEET_RUNTIME": "onnxruntime", "VISIONFLEET_PRECISION": "bf16"}
    result = visionfleet("worker", "-Q", "bulk", env=env, timeout=60)
    assert result.returncode == 2 and "precision bf16 does not run on onnxruntime" in result.stderr
    env = {**embedded_env(tmp_path), "VISIONFLEET_DECODE": "gpu", "VISIONFLEET_DEVICE": "cpu"}
    result = visionfleet("worker", "-Q", "bulk", env=env, timeout=60)
    assert result.returncode == 2 and "VISIONFLEET_DECODE=gpu needs the model on a CUDA GPU" in result.stderr
    for name, value, words in [("VISIONFLEET_MODEL", "efficientnet_lite1", "did you mean efficientnet_lite0?"),
                               ("VISIONFLEET_PRECISION", "fp16", "fp16 on a CPU runs about 20x slower")]:
        env = {**embedded_env(tmp_path), "VISIONFLEET_DEVICE": "cpu", name: value}  # its own model and engine
        result = visionfleet("worker", "-Q", "online,bulk", env=env, timeout=60)
        assert result.returncode == 2 and words in result.stderr and "ready" not in result.stderr, result.stderr


def test_a_corrupt_model_file_fails_the_job_after_bounded_tries(tmp_path, photos):
    (tmp_path / "corrupt.pt").write_bytes(b"not a TorchScript archive")
    env = embedded_env(tmp_path)
    result = visionfleet("relabel", str(photos), "--output", str(tmp_path / "labels"), "--model",
                         f"torchscript:{tmp_path / 'corrupt.pt'}", env=env, cwd=tmp_path, timeout=60)
    assert result.returncode == 1 and "failed to load 3 times: RuntimeError" in result.stderr, result.stderr
    assert not (tmp_path / "home" / "broker").exists() or not any((tmp_path / "home" / "broker").iterdir())


def test_a_bad_setting_stops_relabel_before_anything_is_planned(tmp_path, photos):
    env = {**embedded_env(tmp_path), "VISIONFLEET_MAX_BATCH_SIZE": "abc"}
    result = visionfleet("relabel", str(photos), "--output", str(tmp_path / "labels"), env=env,
                         cwd=tmp_path, timeout=60)
    assert result.returncode == 2 and "VISIONFLEET_MAX_BATCH_SIZE='abc' is not a whole number" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "labels").exists()  # nothing written to DEST


def test_resume_with_another_output_names_the_right_one(tmp_path, photos):
    env = embedded_env(tmp_path)
    first = visionfleet("relabel", str(photos), "--output", str(tmp_path / "labels"), env=env)
    job_id = first.stdout.strip().splitlines()[-1]
    wrong = visionfleet("resume", job_id, "--output", str(tmp_path / "elsewhere"), env=env)
    assert wrong.returncode == 2 and f"give --output {tmp_path / 'labels'}" in wrong.stderr, wrong.stderr
    right = visionfleet("resume", job_id, "--output", "labels", env=env, cwd=tmp_path)  # relative: where typed
    assert right.returncode == 0 and "0 shards enqueued again" in right.stderr, right.stderr


def test_a_source_that_matches_no_image_is_refused_unless_allowed(tmp_path):
    (tmp_path / "typo").mkdir()
    (tmp_path / "typo" / "notes.md").write_text("not an image")
    env = embedded_env(tmp_path)
    result = visionfleet("relabel", str(tmp_path / "typo"), "--output", str(tmp_path / "labels"), env=env)
    assert result.returncode == 2, result.stderr
    assert f"source {tmp_path / 'typo'} matched no images (only files ending .jpg" in result.stderr
    assert "--allow-empty" in result.stderr and not (tmp_path / "labels").exists()  # nothing written
    allowed = visionfleet("relabel", str(tmp_path / "typo"), "--output", str(tmp_path / "labels"), "--allow-empty",
                          env=env)
    assert allowed.returncode == 0 and "succeeded 0/0" in allowed.stderr, allowed.stderr


def test_a_job_of_non_images_exits_1_and_ends_failed_with_the_reason(tmp_path):
    (tmp_path / "texts").mkdir()
    for i in range(20):
        (tmp_path / "texts" / f"{i:02d}.jpg").write_text(f"notes {i}: a text file named like a photo")
    env = embedded_env(tmp_path)
    result = visionfleet("relabel", str(tmp_path / "texts"), "--output", str(tmp_path / "labels"), env=env)
    assert result.returncode == 1, result.stderr
    job_id = result.stdout.strip().splitlines()[-1]
    reason = ("20 of 20 records are errors (100%, over the job's --max-error-rate of 50%); most common: not an "
              "image 20 (e.g. not an image")
    assert f"{job_id}: failed 20/20 done, 20 errors" in result.stderr and f"({reason}" in result.stderr
    status = json.loads(visionfleet("status", job_id, "--json", env=env).stdout)
    assert (status["state"], status["errors"]) == ("failed", 20) and status["reason"].startswith(reason)
    root = tmp_path / "labels" / job_id
    summary = json.loads((root / "_SUMMARY.json").read_text())
    assert (summary["state"], summary["reason"], summary["error_kinds"]["not an image"]["count"]) == \
        ("failed", status["reason"], 20)
    assert not (root / "_SUCCESS.json").exists()  # a pipeline waiting for it never takes this job
    compared = visionfleet("diff", str(root), str(root), "--output", str(tmp_path / "diff"), env=env)
    assert compared.returncode == 0, compared.stderr
    assert f"warning: the old job failed: {reason}" in compared.stdout
    assert json.loads((tmp_path / "diff" / "diff.json").read_text())["new"]["state"] == "failed"


def test_missing_inputs_stop_the_job_early_and_resume_labels_the_rest_once_they_exist(tmp_path):
    photos = linked_photos(tmp_path, 1200)
    manifest = tmp_path / "list.txt"
    manifest.write_text("".join(f"{path}\n" for path in sorted(photos.iterdir())))
    photos.rename(tmp_path / "elsewhere")  # the manifest points at a folder that is not there (yet)
    env = embedded_env(tmp_path)
    result = visionfleet("relabel", str(manifest), "--output", str(tmp_path / "labels"), "--shard-size", "1200",
                         "--max-error-rate", "0.95", env=env)
    assert result.returncode == 1, result.stderr
    job_id = result.stdout.strip().splitlines()[-1]
    status = json.loads(visionfleet("status", job_id, "--json", env=env).stdout)
    done = status["done"]
    assert status["state"] == "failed" and status["ok"] == 0 and 1000 <= done < 1200, status
    assert status["reason"].startswith(f"stopped early: the first {done} records committed are all errors of one "
                                       f"kind, not found, e.g. no such file: {tmp_path / 'photos'}/00000")
    assert f"; {1200 - done} of 1200 inputs left unlabelled. Fix the cause" in status["reason"]
    assert f"`visionfleet resume {job_id} --output {tmp_path / 'labels'}` labels them" in status["reason"]
    summary = json.loads((tmp_path / "labels" / job_id / "_SUMMARY.json").read_text())
    assert (summary["state"], summary["unlabelled"], summary["errors"]) == ("failed", 1200 - done, done)

    (tmp_path / "elsewhere").rename(photos)  # the cause fixed
    again = visionfleet("resume", job_id, "--output", str(tmp_path / "labels"), env=env)
    assert again.returncode == 0, again.stderr
    status = json.loads(visionfleet("status", job_id, "--json", env=env).stdout)
    assert (status["state"], status["ok"], status["errors"]) == ("succeeded", 1200 - done, done)
    summary = json.loads((tmp_path / "labels" / job_id / "_SUCCESS.json").read_text())
    assert (summary["unlabelled"], summary["ok"], len(summary["parts"])) == (0, 1200 - done, len(set(summary["parts"])))

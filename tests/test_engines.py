"""Runtimes and precisions: the pure choice, known answers on every runtime, the int8 gate, the artifact cache."""
import logging
import subprocess
import sys

import numpy as np
import pytest

from tests.helpers import REPO
from tests.photos import KNOWN, photo_bytes
from visionfleet.pipeline.artifacts import ArtifactCache
from visionfleet.pipeline.calibration import calibration_set
from visionfleet.pipeline.decode import Geometry, decode_image
from visionfleet.pipeline.engines import RuntimeSettings
from visionfleet.pipeline.errors import ConfigError
from visionfleet.pipeline.model_loader import DEFAULT_MODEL, load_model
from visionfleet.pipeline.runtimes.choice import Engine, choose_engine
from visionfleet.pipeline.storage import storage_for

from bench.e2e_bench import make_photos
from bench.samples import bundled

# Real photos to calibrate on, none of them a known-answer photo.
CALIBRATION_PHOTOS = ("astronaut.png", "motorcycle_left.png", "rocket.jpg", "horse.png", "coins.png", "retina.jpg",
                      "hubble_deep_field.jpg", "ihc.png", "brick.png", "gravel.png", "grass.png", "moon.png",
                      "motorcycle_right.png", "cell.png", "clock_motion.png", "color.png")


@pytest.mark.parametrize("runtime, precision, cuda, expected", [
    ("auto", "auto", False, Engine("onnxruntime", "fp32")),
    ("auto", "auto", True, Engine("torch", "fp16")),
    ("auto", "int8", False, Engine("onnxruntime", "int8")),
    ("auto", "int8", True, Engine("onnxruntime", "int8")),
    ("auto", "bf16", True, Engine("torch", "bf16")),
    ("torch", "auto", False, Engine("torch", "fp32")),
    ("onnxruntime", "auto", True, Engine("onnxruntime", "fp32")),
])
def test_choose_engine(runtime, precision, cuda, expected):
    assert choose_engine(runtime, precision, cuda=cuda) == expected


@pytest.mark.parametrize("runtime, precision, words", [
    ("onnxruntime", "bf16", "use runtime torch"),
    ("torch", "int8", "use runtime onnxruntime"),
    ("tensorrt", "auto", "not one of auto, torch, onnxruntime"),
    ("auto", "fp8", "not one of"),
])
def test_choose_engine_refuses_what_cannot_run(runtime, precision, words):
    with pytest.raises(ConfigError, match=words):
        choose_engine(runtime, precision, cuda=False)


@pytest.mark.parametrize("precision, cpu_bf16, slower", [("fp16", False, "about 20x"), ("fp16", True, "about 20x"),
                                                         ("bf16", False, "3x to 25x")])
def test_a_half_precision_that_is_a_trap_on_a_cpu_is_refused_naming_the_cpu(precision, cpu_bf16, slower):
    with pytest.raises(ConfigError, match=f"{precision} on a CPU.* runs {slower} slower than fp32.*no CUDA GPU; "
                                          "use --precision fp32 \\(or int8\\)"):
        choose_engine("auto", precision, cuda=False, cpu_bf16=cpu_bf16)
    assert choose_engine("torch", precision, cuda=True) == Engine("torch", precision)


def test_bf16_runs_on_a_cpu_with_bf16_instructions():
    assert choose_engine("auto", "bf16", cuda=False, cpu_bf16=True) == Engine("torch", "bf16")


def known_crops() -> np.ndarray:
    return np.stack([decode_image(photo_bytes(name), Geometry()) for name in KNOWN])


def assert_known_answers(probs: np.ndarray) -> None:
    for name, row in zip(KNOWN, probs):
        assert int(row.argmax()) in KNOWN[name], name


def photos_calibration(names=CALIBRATION_PHOTOS, size: int = 8):
    uris = [str(bundled(name)) for name in names]
    return lambda geometry: calibration_set(uris, geometry, size=size, where="test photos",
                                            max_pixels=100_000_000, max_bytes=50_000_000)


@pytest.mark.slow
def test_onnxruntime_fp32_matches_torch(model_cache):
    settings = RuntimeSettings(runtime="onnxruntime", precision="fp32", max_batch_size=8, model_cache=model_cache)
    onnx = load_model(DEFAULT_MODEL, settings)
    reference = load_model(DEFAULT_MODEL, RuntimeSettings(runtime="torch", precision="fp32", max_batch_size=8))
    crops = known_crops()
    probs = onnx.checked_predict(crops)
    assert np.abs(probs - reference.checked_predict(crops)).max() < 1e-4
    assert_known_answers(probs)
    assert onnx.info.engine == {"runtime": "onnxruntime", "precision": "fp32"}


@pytest.mark.parametrize("size", [1, 2, 3, 17, 32])
def test_onnxruntime_on_three_threads_answers_row_for_row_as_on_one(model_cache, size):
    # Slices of a batch run on the threads side by side: the rows must come back in order.
    photos = known_crops()
    crops = np.stack([np.roll(photos[i % len(photos)], i, axis=1) for i in range(size)])  # every row differs
    one, three = (load_model(DEFAULT_MODEL, RuntimeSettings(runtime="onnxruntime", precision="fp32", threads=t,
                                                              model_cache=model_cache)) for t in (1, 3))
    assert np.abs(three.checked_predict(crops) - one.checked_predict(crops)).max() < 1e-5


@pytest.mark.slow
def test_int8_keeps_the_known_answers_and_records_its_agreement(model_cache, tmp_path):
    # A job's own images: different 640x480 views of the same kinds of scene.
    uris = [str(p) for p in make_photos(tmp_path, 32, size=(640, 480))]
    settings = RuntimeSettings(precision="int8", max_batch_size=8, model_cache=model_cache)
    model = load_model(DEFAULT_MODEL, settings, calibration=lambda geometry: calibration_set(
        uris, geometry, size=16, where="test", max_pixels=10**8, max_bytes=10**8))
    assert_known_answers(model.checked_predict(known_crops()))
    engine = model.info.engine
    assert engine["runtime"] == "onnxruntime" and engine["precision"] == "int8"
    assert 0.98 <= engine["int8_agreement"] <= 1 and engine["int8_held_out"] == 16


@pytest.mark.slow
def test_the_gate_refuses_int8_calibrated_on_unrepresentative_images(model_cache, tmp_path):
    # Calibrated on black frames, measured on photos: the activation ranges are wrong.
    black = tmp_path / "black.png"
    black.write_bytes(_png(np.zeros((64, 64, 3), np.uint8)))
    photos = [str(bundled(name)) for name in CALIBRATION_PHOTOS[:8]]
    uris = [uri for photo in photos for uri in (str(black), photo)]  # even: calibrate, odd: held out
    settings = RuntimeSettings(precision="int8", max_batch_size=8, model_cache=model_cache)
    with pytest.raises(ConfigError, match=r"held-out images, below VISIONFLEET_INT8_MIN_AGREEMENT=0.98"):
        load_model(DEFAULT_MODEL, settings, calibration=lambda geometry: calibration_set(
            uris, geometry, size=8, where="test", max_pixels=10**8, max_bytes=10**8))


def test_calibration_takes_the_first_decodable_images_in_order_however_many_threads_read_them(tmp_path):
    good = [str(p) for p in make_photos(tmp_path, 12, size=(320, 240))]
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    uris = good[:3] + [str(tmp_path / "broken.jpg")] * 2 + good[3:]
    sets = [calibration_set(uris, Geometry(), size=4, where="test", max_pixels=10**8, max_bytes=10**8, threads=n)
            for n in (1, 3, 8)]
    expected = np.stack([decode_image(open(uri, "rb").read(), Geometry()) for uri in good[:8]])
    for chosen in sets:
        assert np.array_equal(chosen.calibrate, expected[0::2]) and np.array_equal(chosen.held_out, expected[1::2])
        assert chosen.digest == sets[0].digest
        crops = chosen.by_uri()  # what the job's labeller takes instead of decoding again
        assert list(crops) == good[0:8:2] + good[1:8:2]
        assert all(np.array_equal(crops[uri], expected[good.index(uri)]) for uri in good[:8])


def test_int8_without_calibration_images_says_how_to_give_them(model_cache):
    with pytest.raises(ConfigError, match="VISIONFLEET_CALIBRATION"):
        load_model(DEFAULT_MODEL, RuntimeSettings(precision="int8", model_cache=model_cache))
    with pytest.raises(ConfigError, match="found 2 decodable images in test photos"):
        load_model(DEFAULT_MODEL, RuntimeSettings(precision="int8", model_cache=model_cache),
                   calibration=photos_calibration(CALIBRATION_PHOTOS[:2]))


def _png(array: np.ndarray) -> bytes:
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(array).save(out, "PNG")
    return out.getvalue()


@pytest.fixture(params=["local", "oss"])
def cache_root(request, tmp_path) -> str:
    if request.param == "local":
        return str(tmp_path / "cache")
    bucket = request.getfixturevalue("bucket")
    request.getfixturevalue("oss_settings")
    return f"oss://{bucket.bucket_name}/models/"


def test_artifact_cache_builds_once_and_rebuilds_what_fails_verification(cache_root, caplog):
    builds = []

    def build():
        builds.append(1)
        return b"artifact %d" % len(builds), {"note": "kept"}

    cache = ArtifactCache(cache_root)
    first, manifest = cache.get_or_build("m-fp32", {"weights": "abc"}, build)
    again, same = ArtifactCache(cache_root).get_or_build("m-fp32", {"weights": "abc"}, build)
    assert (again, same) == (first, manifest) and len(builds) == 1 and manifest["note"] == "kept"
    other, _ = cache.get_or_build("m-fp32", {"weights": "changed"}, build)
    assert other != first and len(builds) == 2
    storage = storage_for(cache_root)
    artifact = next(uri for uri in storage.list(cache_root) if uri.endswith(".onnx") and "m-fp32" in uri)
    storage.write(artifact, b"damaged")
    with caplog.at_level(logging.WARNING):
        cache.get_or_build("m-fp32", {"weights": "abc"}, build)
        cache.get_or_build("m-fp32", {"weights": "changed"}, build)
    assert len(builds) == 3 and "failed verification" in caplog.text


@pytest.mark.slow
def test_two_workers_exporting_at_once_leave_one_whole_artifact(tmp_path, caplog):
    cache = tmp_path / "cache"
    code = ("from visionfleet.pipeline.engines import RuntimeSettings; from visionfleet.pipeline.model_loader import "
            f"load_model; load_model('{DEFAULT_MODEL}', RuntimeSettings(runtime='onnxruntime', "
            f"model_cache={str(cache)!r}))")
    procs = [subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stderr=subprocess.PIPE) for _ in range(2)]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err.decode()
    assert sorted(p.suffix for p in cache.iterdir()) == [".json", ".onnx"]  # one artifact, no temp files
    with caplog.at_level(logging.INFO, logger="visionfleet.pipeline.artifacts"):
        model = load_model(DEFAULT_MODEL, RuntimeSettings(runtime="onnxruntime", model_cache=str(cache)))
    assert "model artifact fetched" in caplog.text and "built" not in caplog.text
    assert_known_answers(model.checked_predict(known_crops()))

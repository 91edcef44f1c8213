"""Loading a model package: an ONNX graph on ONNX Runtime, a TorchScript file on torch.

An ONNX package is converted once into the standard ONNX form (``package_onnx``) and kept in the artifact
cache under the package's content digest, so the fp32 runtime, int8 quantization and its gate run it as
they run the built-in model. A TorchScript package runs on torch (GPU included) with its own layout,
dtype, normalisation and activation; one forward pass of one blank image checks, when it loads, that it
gives what ``model.json`` says (a TorchScript file cannot be inspected without running it).
"""
import dataclasses
from pathlib import Path

import numpy as np

from visionfleet.pipeline.artifacts import ArtifactCache
from visionfleet.pipeline.engines import Calibration, RuntimeSettings, onnx_model, torch_model
from visionfleet.pipeline.errors import ConfigError
from visionfleet.pipeline.model import Model, ModelInfo
from visionfleet.pipeline.model_package import ModelPackage, check_package
from visionfleet.pipeline.runtimes.choice import Engine, has_cuda, package_engine

# Names the standard form ``package_onnx`` builds: bump it when that changes, and cached forms are rebuilt.
STANDARD_FORM = "1"


def load_package(model_file: str | Path, settings: RuntimeSettings, calibration: Calibration | None = None) -> Model:
    """The package whose model file is at ``model_file`` (a local path), checked, on the runtime it runs on."""
    package = check_package(model_file)
    engine = package_engine(package.kind, settings.runtime, settings.precision, cuda=has_cuda(settings.device))
    info = ModelInfo(package.name, list(package.class_names), geometry=package.geometry(),
                     max_batch_size=settings.max_batch_size, version=package.version, threshold=package.threshold)
    if package.kind == "onnx":
        return _onnx(package, info, engine, settings, calibration)
    return _torchscript(package, info, engine, settings)


def _onnx(package: ModelPackage, info: ModelInfo, engine: Engine, settings: RuntimeSettings,
          calibration: Calibration | None) -> Model:
    import onnx

    from visionfleet.pipeline.package_onnx import load_graph, standard_form, static_embedding_dim

    def build() -> tuple[bytes, dict]:
        graph = load_graph(package)
        converted = standard_form(package, graph)
        dim = None
        if package.embedding is not None:
            dim = static_embedding_dim(package, graph) or _measured_embedding_dim(converted, info)
        return converted, {"embedding_dim": dim}

    fields = {"package": package.content_digest(), "form": STANDARD_FORM, "onnx": onnx.__version__}
    fp32, manifest = ArtifactCache(settings.model_cache).get_or_build(f"{package.name}-package", fields, build)
    info = dataclasses.replace(info, embedding_dim=manifest["embedding_dim"])
    return onnx_model(fp32, info, engine, settings, calibration)


def _measured_embedding_dim(converted: bytes, info: ModelInfo) -> int:
    """The embedding's length where the graph leaves it open: one blank image through the model."""
    from visionfleet.pipeline.runtimes.onnx_runtime import OnnxModel

    blank = np.zeros((1, *info.geometry.size, 3), np.uint8)
    return int(OnnxModel(converted, info, threads=1).predict_embedded(blank)[1].shape[1])


def _torchscript(package: ModelPackage, info: ModelInfo, engine: Engine, settings: RuntimeSettings) -> Model:
    from visionfleet.pipeline.runtimes.torch_runtime import TorchIO

    def load():
        import torch

        try:
            return torch.jit.load(str(package.model_file), map_location="cpu")
        except RuntimeError as exc:
            raise ConfigError(f"{package.model_file} cannot be loaded as TorchScript ({exc}); save it with "
                              "torch.jit.save") from None

    spec = package.input
    io = TorchIO(layout=spec.layout, dtype=spec.dtype, scale=spec.scale, mean=spec.mean, std=spec.std,
                 activation=package.activation, output=package.output, embedding=package.embedding)
    model = torch_model(load, info, engine, settings, io)
    model.info = dataclasses.replace(model.info, embedding_dim=_probe(package, model))
    return model


def _probe(package: ModelPackage, model) -> int | None:
    """One blank image through the module: ConfigError naming the field of ``model.json`` that its outputs
    disagree with; the embedding's length, if it gives one."""
    import torch

    blank = torch.zeros((1, *package.input.size, 3), dtype=torch.uint8, device=model.device)
    try:
        with torch.inference_mode():
            probs, vectors = model.outputs(blank)
    except KeyError as exc:
        field = "output.name" if exc.args[0] == package.output else "embedding.output"
        raise package.field_error(field, f"is {exc.args[0]!r}, not a key of the dict the module returns",
                                  "give the key of that output") from None
    except RuntimeError as exc:
        raise package.field_error("input", f"does not fit the module ({str(exc).splitlines()[0]})",
                                  "give the size, layout and dtype it takes") from None
    if probs.shape[1] != len(package.class_names):
        labels = "labels_file" if package.labels_file else "labels"
        raise package.field_error(labels, f"has {len(package.class_names)} classes, but the module gives "
                                  f"{probs.shape[1]} outputs", "give one class name per output")
    if package.embedding is not None and vectors is None:
        raise package.field_error("embedding.output", f"is {package.embedding!r}, but the module returns no "
                                  "embedding", "return (output, embedding) or a dict of both from forward")
    return None if package.embedding is None else int(vectors.shape[1])

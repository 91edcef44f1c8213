"""A model package's description: its ``model.json``, read and checked field by field.

A package is a model file (``model.onnx`` or a TorchScript ``model.pt``), the ``model.json`` beside it and,
if it names one, a labels file. ``model.json`` says what the model is (name, version, class names), what it
takes (the input tensor's name, size, layout, dtype and normalisation, how pictures are resized to it) and
what it gives (the output tensor and its activation; optionally an embedding tensor). Each field that is
wrong is refused with its name and the fix, before any model code runs; the model file itself is checked
against it by ``check_package`` (an ONNX graph: ``package_onnx``).
"""
import hashlib
import json
import math
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from visionfleet.pipeline.errors import ConfigError
from visionfleet.pipeline.model_spec import MODEL_JSON, package_kind

if TYPE_CHECKING:  # decode imports Pillow and numpy, which the command planning a job of no package never needs
    from visionfleet.pipeline.decode import Geometry

LAYOUTS = ("NCHW", "NHWC")
DTYPES = ("float32", "uint8")
ACTIVATIONS = ("softmax", "sigmoid", "none")
DEFAULT_THRESHOLD = 0.5

_FIELDS = {"name", "version", "labels", "labels_file", "input", "output", "embedding"}
_INPUT_FIELDS = {"name", "size", "layout", "dtype", "scale", "mean", "std", "resize", "crop", "interpolation"}
_OUTPUT_FIELDS = {"name", "activation", "threshold"}
_EMBEDDING_FIELDS = {"output"}


@dataclass(frozen=True)
class InputSpec:
    """The tensor the model takes, and how a picture becomes it: x = (pixel * scale - mean) / std (float32)."""

    name: str
    size: tuple[int, int]  # (height, width)
    layout: str = "NCHW"
    dtype: str = "float32"
    scale: float = 1 / 255
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    resize: int | None = None  # shorter side, then a centre crop to size; None: resized straight to size
    interpolation: str = "bilinear"


@dataclass(frozen=True)
class ModelPackage:
    model_file: Path
    kind: str  # "onnx" or "torchscript"
    name: str
    version: str
    class_names: tuple[str, ...]
    input: InputSpec
    output: str
    activation: str
    threshold: float | None  # sigmoid only: a class is a label at or above it
    embedding: str | None = None  # the embedding tensor's name
    labels_file: str | None = None

    @property
    def described_by(self) -> Path:
        return self.model_file.parent / MODEL_JSON

    def files(self) -> list[Path]:
        """Every file that makes the package: copy these and the copy is the same package."""
        extra = [self.model_file.parent / self.labels_file] if self.labels_file else []
        return [self.model_file, self.described_by, *extra]

    def content_digest(self) -> str:
        """sha256 over the package's files (their names and bytes): changes when any of them does."""
        return content_digest(self.files())

    def geometry(self) -> "Geometry":
        from visionfleet.pipeline.decode import Geometry

        return Geometry(resize=self.input.resize, crop=self.input.size, interpolation=self.input.interpolation)

    def check_embeddings(self) -> None:
        """For a job that asks for embeddings: ConfigError unless the package names its embedding tensor."""
        if self.embedding is None:
            raise self.field_error("embedding", "is not given, and the job asks for embeddings (--embeddings)",
                                   'name the tensor, e.g. "embedding": {"output": "features"}, or drop --embeddings')

    def field_error(self, field: str, problem: str, fix: str) -> ConfigError:
        return ConfigError(f"{self.described_by}: {field} {problem}; {fix}")


def content_digest(files: list[Path]) -> str:
    """A package's digest from its files, in ``ModelPackage.files``'s order: for a copy not read as a package
    (a pinned one, checked against the digest its job was planned with)."""
    whole = hashlib.sha256()
    for path in files:
        with open(path, "rb") as f:
            whole.update(f"{path.name}\0{hashlib.file_digest(f, 'sha256').hexdigest()}\n".encode())
    return whole.hexdigest()


def read_package(model_file: str | Path) -> ModelPackage:
    """The package whose model file is ``model_file`` (a local path), from its ``model.json``."""
    model_file = Path(model_file)
    kind = package_kind(str(model_file))
    where = model_file.parent / MODEL_JSON
    try:
        described = json.loads(where.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"model package {model_file}: cannot read {where} ({exc.strerror}); write a "
                          f"{MODEL_JSON} beside the model file (README, 'Plugging in a model')") from None
    except ValueError as exc:
        raise ConfigError(f"{where} is not valid JSON ({exc}); fix it (README, 'Plugging in a model')") from None
    return _Reader(where).package(described, model_file, kind)


def check_package(model_file: str | Path) -> ModelPackage:
    """The package at ``model_file`` (a local path), its ``model.json`` read and its model file checked
    against it: ConfigError naming the field that is wrong. An ONNX graph is checked whole (``package_onnx``);
    a TorchScript file is checked to be one, and its outputs when a worker loads it (one small forward)."""
    package = read_package(model_file)
    if package.kind == "onnx":
        from visionfleet.pipeline.package_onnx import check_graph, load_graph

        check_graph(package, load_graph(package))
    else:
        _check_torchscript_file(package.model_file)
    return package


def _check_torchscript_file(path: Path) -> None:
    """A TorchScript file is a zip archive with the module's code in it (torch.jit.save); checked without
    importing torch, which takes seconds: a state dict (torch.save: a zip without code) or any other file is
    refused here, before a job is planned."""
    try:
        with zipfile.ZipFile(path) as archive:
            scripted = any("/code/" in name for name in archive.namelist())
    except (OSError, zipfile.BadZipFile):
        scripted = False
    if not scripted:
        raise ConfigError(f"{path} is not a TorchScript file; save the model with torch.jit.save "
                          "(torch.jit.script or torch.jit.trace first), or export it to ONNX")


class _Reader:
    """Reads one ``model.json``; every refusal names the field (``input.layout``) and the fix."""

    def __init__(self, where: Path) -> None:
        self.where = where

    def error(self, field: str, problem: str, fix: str) -> ConfigError:
        return ConfigError(f"{self.where}: {field} {problem}; {fix}")

    def package(self, described: object, model_file: Path, kind: str) -> ModelPackage:
        if not isinstance(described, dict):
            raise ConfigError(f"{self.where} is not a JSON object; write one (README, 'Plugging in a model')")
        self.known(described, _FIELDS, "")
        names, labels_file = self.labels(described)
        output = self.section(described, "output", _OUTPUT_FIELDS, required=True)
        activation = self.choice(output, "output.activation", ACTIVATIONS, None)
        threshold = None
        if activation == "sigmoid":
            threshold = self.number(output, "output.threshold", DEFAULT_THRESHOLD, 0.0, 1.0)
        elif "threshold" in output:
            raise self.error("output.threshold", f"is given with activation {activation}",
                             "a threshold is for sigmoid (multi-label) models: remove it or use sigmoid")
        embedding = self.section(described, "embedding", _EMBEDDING_FIELDS, required=False)
        return ModelPackage(
            model_file=model_file, kind=kind, name=self.text(described, "name"),
            version=self.version(described), class_names=names, input=self.input(described),
            output=self.text(output, "output.name"), activation=activation, threshold=threshold,
            embedding=self.text(embedding, "embedding.output") if embedding else None, labels_file=labels_file)

    def known(self, section: dict, fields: set[str], prefix: str) -> None:
        for key in section:
            if key not in fields:
                raise self.error(prefix + key, "is not a field",
                                 f"the fields{' of ' + prefix[:-1] if prefix else ''} are {', '.join(sorted(fields))}")

    def section(self, described: dict, name: str, fields: set[str], *, required: bool) -> dict:
        section = described.get(name)
        if section is None and not required:
            return {}
        if not isinstance(section, dict):
            raise self.error(name, "is missing" if section is None else f"is {json.dumps(section)}",
                             f"give an object with {', '.join(sorted(fields))}")
        self.known(section, fields, name + ".")
        return section

    def text(self, section: dict, field: str) -> str:
        value = section.get(field.rsplit(".", 1)[-1])
        if not isinstance(value, str) or not value:
            raise self.error(field, "is missing" if value is None else f"is {json.dumps(value)}", "give a name")
        return value

    def version(self, described: dict) -> str:
        value = described.get("version")
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        if not isinstance(value, str) or not value:
            raise self.error("version", "is missing" if value is None else f"is {json.dumps(value)}",
                             'give the model\'s version, e.g. "3": every record names it')
        return value

    def choice(self, section: dict, field: str, choices: tuple[str, ...], default: str | None) -> str:
        value = section.get(field.rsplit(".", 1)[-1], default)
        if value not in choices:
            what = "is missing" if value is None else f"is {json.dumps(value)}"
            raise self.error(field, what, f"give {', '.join(choices[:-1])} or {choices[-1]}")
        return value

    def number(self, section: dict, field: str, default: float | None, low: float, high: float | None,
               *, above_low: bool = False) -> float | None:
        value = section.get(field.rsplit(".", 1)[-1], default)
        if value is None:
            return None
        ok = (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
              and (value > low if above_low else value >= low) and (high is None or value <= high))
        if not ok:
            bound = f"above {low}" if above_low else f"at least {low}"
            raise self.error(field, f"is {json.dumps(value)}",
                             f"give a number {bound}{f' and at most {high}' if high is not None else ''}")
        return value

    def labels(self, described: dict) -> tuple[tuple[str, ...], str | None]:
        labels, labels_file = described.get("labels"), described.get("labels_file")
        if (labels is None) == (labels_file is None):
            raise self.error("labels", "and labels_file are both given" if labels is not None else "is missing",
                             "give the class names as labels (a list) or labels_file (a file beside model.json, "
                             "one name per line)")
        if labels_file is not None:
            if not isinstance(labels_file, str) or not labels_file or "/" in labels_file or labels_file in (".", ".."):
                raise self.error("labels_file", f"is {json.dumps(labels_file)}",
                                 "give the name of a file beside model.json, one class name per line")
            try:
                labels = (self.where.parent / labels_file).read_text(encoding="utf-8").splitlines()
            except OSError as exc:
                raise self.error("labels_file", f"{labels_file} cannot be read ({exc.strerror})",
                                 "put the file beside model.json, one class name per line") from None
            field = f"labels_file ({labels_file})"
        else:
            field = "labels"
        if not isinstance(labels, list) or not labels or not all(isinstance(n, str) and n.strip() for n in labels):
            raise self.error(field, "is not a list of class names" if field == "labels" else "has a blank line or none",
                             "give one non-empty name per class, in the order of the model's outputs")
        return tuple(labels), labels_file

    def input(self, described: dict) -> InputSpec:
        section = self.section(described, "input", _INPUT_FIELDS, required=True)
        size = section.get("size")
        if not (isinstance(size, list) and len(size) == 2
                and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)):
            raise self.error("input.size", "is missing" if size is None else f"is {json.dumps(size)}",
                             "give [height, width] in pixels, e.g. [224, 224]")
        dtype = self.choice(section, "input.dtype", DTYPES, "float32")
        if dtype == "uint8":
            for name in ("scale", "mean", "std"):
                if name in section:
                    raise self.error(f"input.{name}", "is given with dtype uint8, which takes the pixels as they "
                                     "are", "remove it, or use dtype float32 to have it applied")
        resize = self.resize(section, size)
        from visionfleet.pipeline.decode import FILTERS

        return InputSpec(
            name=self.text(section, "input.name"), size=(size[0], size[1]),
            layout=self.choice(section, "input.layout", LAYOUTS, "NCHW"), dtype=dtype,
            scale=self.number(section, "input.scale", 1 / 255, 0.0, None, above_low=True),
            mean=self.triple(section, "input.mean", 0.0), std=self.triple(section, "input.std", 1.0),
            resize=resize, interpolation=self.choice(section, "input.interpolation", tuple(FILTERS), "bilinear"))

    def resize(self, section: dict, size: list[int]) -> int | None:
        crop = self.choice(section, "input.crop", ("center",), "center")
        resize = section.get("resize")
        if resize is None:
            if "crop" in section:
                raise self.error("input.crop", f"is {json.dumps(crop)} without input.resize",
                                 "give resize (the shorter side before the centre crop), or remove crop to "
                                 "resize pictures straight to size")
            return None
        if not (isinstance(resize, int) and not isinstance(resize, bool) and resize >= max(size)):
            raise self.error("input.resize", f"is {json.dumps(resize)}",
                             f"give the shorter side in pixels, at least the size's larger side ({max(size)})")
        return resize

    def triple(self, section: dict, field: str, default: float) -> tuple[float, float, float]:
        value = section.get(field.rsplit(".", 1)[-1], [default] * 3)
        ok = (isinstance(value, list) and len(value) == 3
              and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value))
        if not ok or (field.endswith("std") and 0 in value):
            raise self.error(field, f"is {json.dumps(value)}",
                             "give three numbers, one per channel (R, G, B)" + (", none zero" if field.endswith("std") else ""))
        return (float(value[0]), float(value[1]), float(value[2]))

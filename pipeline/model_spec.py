"""What a model spec names, judged from the string before any model code is imported or any weights load.

A spec is a built-in name (``BUILT_IN``), a model package (the path or ``oss://`` URI of its ``model.onnx``
or ``model.pt``, a ``model.json`` beside it), ``torchscript:PATH`` or ``package.module:factory``. A bare
name that is not a built-in one cannot load anywhere, so ``relabel``, ``classify`` and a worker's start
refuse it at once, with the nearest built-in name. A local package or TorchScript file is checked only
where the workers run on this machine (embedded); a plug-in is never imported here: its package may be
installed on the workers alone.
"""
import difflib
import os

from visionfleet.pipeline.errors import ConfigError
from visionfleet.pipeline.job import DEFAULT_MODEL

BUILT_IN = (DEFAULT_MODEL,)
TORCHSCRIPT = "torchscript:"
PACKAGE_PREFIXES = ("oss://", "/", "./", "../")
PACKAGE_SUFFIXES = (".onnx", ".pt")
MODEL_JSON = "model.json"


def is_package(spec: str) -> bool:
    """A model package's file: a path or ``oss://`` URI, or a name ending ``.onnx`` or ``.pt`` (but not
    ``torchscript:PATH``, the older form)."""
    return not spec.startswith(TORCHSCRIPT) and (spec.startswith(PACKAGE_PREFIXES) or spec.endswith(PACKAGE_SUFFIXES))


def is_plugin(spec: str) -> bool:
    """A ``package.module:factory`` spec: its model runs as the factory builds it, on whatever it chooses."""
    return ":" in spec and not spec.startswith(TORCHSCRIPT) and not is_package(spec)


def package_kind(spec: str) -> str:
    """``onnx`` or ``torchscript``, from the model file's name; ConfigError for a package spec naming neither."""
    if spec.endswith(".onnx"):
        return "onnx"
    if spec.endswith(".pt"):
        return "torchscript"
    raise ConfigError(f"model package {spec} names no model file; give the path of its model.onnx (ONNX) or "
                      "model.pt (TorchScript), with its model.json beside it")


def check_model_spec(spec: str, *, local: bool = False) -> None:
    """ConfigError, naming the fix, for a spec no worker could load; ``local``: the workers run here."""
    if spec in BUILT_IN:
        return
    if is_package(spec):
        package_kind(spec)
        if local and not spec.startswith("oss://"):
            _check_package_files(spec)
        return
    if spec.startswith(TORCHSCRIPT):
        path = spec.removeprefix(TORCHSCRIPT)
        if local and not os.path.isfile(path):
            raise ConfigError(f"TorchScript model file {path} does not exist; check the path in the model spec")
        return
    if is_plugin(spec):
        module, _, factory = spec.partition(":")
        if not (all(part.isidentifier() for part in module.split(".")) and factory.isidentifier()):
            raise ConfigError(f"model spec {spec!r} is neither a model package, torchscript:PATH nor "
                              f"package.module:factory; give one of those, or a built-in model: {', '.join(BUILT_IN)}")
        return
    near = difflib.get_close_matches(spec.lower(), BUILT_IN, n=1, cutoff=0.6)
    guess = f" (did you mean {near[0]}?)" if near else ""
    raise ConfigError(f"unknown model {spec!r}{guess}; built-in models: {', '.join(BUILT_IN)}; your own: "
                      "a package, ./my-model/model.onnx with its model.json, torchscript:/path/model.pt or "
                      "package.module:factory (README, 'Plugging in a model')")


def _check_package_files(path: str) -> None:
    if not os.path.isfile(path):
        raise ConfigError(f"model file {path} does not exist; check the path in the model spec")
    described = os.path.join(os.path.dirname(path), MODEL_JSON)
    if not os.path.isfile(described):
        raise ConfigError(f"model package {path} has no {MODEL_JSON} beside it ({described}); write one "
                          "(README, 'Plugging in a model')")

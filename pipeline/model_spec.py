"""What a model spec names, judged from the string before any model code is imported or any weights load.

A spec is a built-in name (``BUILT_IN``), ``torchscript:PATH`` or ``package.module:factory``. A bare
name that is not a built-in one cannot load anywhere, so ``relabel``, ``classify`` and a worker's start
refuse it at once, with the nearest built-in name. A TorchScript file is checked only where the
workers run on this machine (embedded); a plug-in is never imported here: its package may be
installed on the workers alone.
"""
import difflib
import os

from visionfleet.pipeline.errors import ConfigError
from visionfleet.pipeline.job import DEFAULT_MODEL

BUILT_IN = (DEFAULT_MODEL,)
TORCHSCRIPT = "torchscript:"


def is_package(spec: str) -> bool:
    """A model package: the path or ``oss://`` URI of its model file, ``model.json`` beside it."""
    if spec.startswith(TORCHSCRIPT):
        return False
    return spec.startswith(("oss://", "/", "./", "../")) or spec.endswith((".onnx", ".pt"))


def is_plugin(spec: str) -> bool:
    """A ``package.module:factory`` spec: its model runs as the factory builds it, on whatever it chooses."""
    return ":" in spec and not spec.startswith(TORCHSCRIPT) and not is_package(spec)


def check_model_spec(spec: str, *, local: bool = False) -> None:
    """ConfigError, naming the fix, for a spec no worker could load; ``local``: the workers run here."""
    if spec in BUILT_IN or is_package(spec):  # a package is read, and checked, when its job is planned
        return
    if spec.startswith(TORCHSCRIPT):
        path = spec.removeprefix(TORCHSCRIPT)
        if local and not os.path.isfile(path):
            raise ConfigError(f"TorchScript model file {path} does not exist; check the path in the model spec")
        return
    if is_plugin(spec):
        module, _, factory = spec.partition(":")
        if not (all(part.isidentifier() for part in module.split(".")) and factory.isidentifier()):
            raise ConfigError(f"model spec {spec!r} is neither torchscript:PATH nor package.module:factory; "
                              f"give one of those, or a built-in model: {', '.join(BUILT_IN)}")
        return
    near = difflib.get_close_matches(spec.lower(), BUILT_IN, n=1, cutoff=0.6)
    guess = f" (did you mean {near[0]}?)" if near else ""
    raise ConfigError(f"unknown model {spec!r}{guess}; built-in models: {', '.join(BUILT_IN)}; your own: "
                      "torchscript:/path/model.pt or package.module:factory (README, 'Plugging in a model')")

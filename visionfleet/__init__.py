"""visionfleet: label images with a fleet of Celery workers.

The public API, for backend services and model plug-ins::

    from visionfleet import VisionClient
    record = VisionClient().classify("oss://bucket/upload/123.jpg", timeout=10)
    app.conf.update(celery_config("staging"))   # a plain Celery app, sending to that namespace's fleet

    from visionfleet import Geometry, Model, ModelInfo, RuntimeSettings
    def build(settings: RuntimeSettings) -> Model: ...   # relabel --model pkg.mod:build

Everything else (``visionfleet.broker``, ``visionfleet.workers``, ...) is
internal and may change between releases. Names load on first use, so
``import visionfleet`` neither imports torch nor builds a Celery app.
"""
from importlib import import_module

_ERRORS = (  # what a caller catches
    "VisionfleetError",
    "ConfigError",
    "InputError",
    "RetryableError",
    "OverloadedError",
    "BrokerUnavailable",
)
__all__ = [
    # client side: what a backend service calls
    "VisionClient",
    "ClientSettings",
    "celery_config",  # for a plain Celery producer: app.conf.update(celery_config("staging"))
    # plug-in side: what a model factory builds
    "Model",
    "ModelInfo",
    "Geometry",
    "RuntimeSettings",
    *_ERRORS,
]

_HOME = {
    "VisionClient": "visionfleet.broker.client",
    "ClientSettings": "visionfleet.broker.client",
    "celery_config": "visionfleet.broker.routes",
    "Model": "visionfleet.pipeline.model",
    "ModelInfo": "visionfleet.pipeline.model",
    "Geometry": "visionfleet.pipeline.decode",
    "RuntimeSettings": "visionfleet.pipeline.engines",
    **dict.fromkeys(_ERRORS, "visionfleet.pipeline.errors"),
}


def __getattr__(name: str):
    if name not in _HOME:
        raise AttributeError(f"module 'visionfleet' has no attribute {name!r}")
    value = getattr(import_module(_HOME[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)

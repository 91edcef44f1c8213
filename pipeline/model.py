"""The model contract: the few things a worker needs from any classifier.

A model takes a batch of decoded crops (uint8 RGB, NHWC, the geometry it
asks for) and returns class probabilities, one row per input, in order.
Decoding, batching, fetching and output are the pipeline's job, so a new
runtime (TorchScript, ONNX Runtime, TensorRT) only implements ``predict``.
"""
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np

from visionfleet.pipeline.decode import Geometry


@dataclass
class ModelInfo:
    """What the pipeline must know about a model before it runs it."""

    name: str
    class_names: list[str]
    geometry: Geometry = field(default_factory=Geometry)
    max_batch_size: int = 32
    # How it runs (runtime, precision, int8 agreement): reported in _SUCCESS.json.
    engine: dict = field(default_factory=dict)


class Model(ABC):
    """A classifier a worker can run: set ``info``, implement ``predict``.

    Plug-ins subclass it and are named by a factory, ``relabel --model
    package.module:build``, where ``build(settings: RuntimeSettings)`` returns one.
    """

    info: ModelInfo

    @abstractmethod
    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Map uint8 ``(N, crop, crop, 3)`` RGB to float32 ``(N, classes)`` probabilities.

        ``N`` never exceeds ``info.max_batch_size``; rows stay in input order.
        """

    def checked_predict(self, batch: np.ndarray) -> np.ndarray:
        """``predict`` with the one-to-one contract enforced."""
        if len(batch) > self.info.max_batch_size:
            raise ValueError(f"batch of {len(batch)} exceeds max_batch_size={self.info.max_batch_size}")
        probs = self.predict(batch)
        expected = (len(batch), len(self.info.class_names))
        if probs.shape != expected:
            raise ValueError(f"model {self.info.name} returned shape {probs.shape}, expected {expected}")
        return probs

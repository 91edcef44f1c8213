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
from visionfleet.pipeline.errors import ConfigError


@dataclass
class ModelInfo:
    """What the pipeline must know about a model before it runs it."""

    name: str
    class_names: list[str]
    geometry: Geometry = field(default_factory=Geometry)
    max_batch_size: int = 32
    # How it runs (runtime, precision, int8 agreement): reported in _SUCCESS.json.
    engine: dict = field(default_factory=dict)
    version: str | None = None  # every record names it (a package's model.json "version")
    # Multi-label: a record's labels are the classes at or above this probability (sigmoid); None: top k.
    threshold: float | None = None
    embedding_dim: int | None = None  # the length of ``predict_embedded``'s vectors; None: it gives none


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

    def predict_embedded(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``predict``'s probabilities and float32 ``(N, info.embedding_dim)`` embeddings, from one pass.

        A model that sets ``info.embedding_dim`` implements it."""
        raise ConfigError(f"model {self.info.name} gives no embeddings; run it without --embeddings")

    def checked_predict(self, batch: np.ndarray) -> np.ndarray:
        """``predict`` with the one-to-one contract enforced."""
        return self.checked_outputs(batch, embeddings=False)[0]

    def checked_outputs(self, batch: np.ndarray, *, embeddings: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """Probabilities, and embeddings when asked for, with the one-to-one contract enforced."""
        if len(batch) > self.info.max_batch_size:
            raise ValueError(f"batch of {len(batch)} exceeds max_batch_size={self.info.max_batch_size}")
        if embeddings:
            if self.info.embedding_dim is None:
                raise ConfigError(f"model {self.info.name} gives no embeddings; run it without --embeddings")
            probs, vectors = self.predict_embedded(batch)
            self._check_shape("embeddings", vectors, (len(batch), self.info.embedding_dim))
        else:
            probs, vectors = self.predict(batch), None
        self._check_shape("probabilities", probs, (len(batch), len(self.info.class_names)))
        return probs, vectors

    def _check_shape(self, what: str, array: np.ndarray, expected: tuple[int, int]) -> None:
        if array.shape != expected:
            raise ValueError(f"model {self.info.name} returned {what} of shape {array.shape}, expected {expected}")

"""A stand-in for a fast accelerator, on the built-in model's geometry (256 -> 224 crops): ``predict``
sleeps as long as a device of ``VISIONFLEET_STANDIN_RATE`` images/s (default 20,000) would take for
the batch, releasing the GIL as a device call does, and returns fixed probabilities over the ImageNet
classes. What a run with it leaves is everything around the model: fetch, decode, batching, commits.

    relabel ... --model bench.standin_model:build   (the worker's VISIONFLEET_MODELS must allow it)
"""
import time

import numpy as np

from visionfleet import Geometry, Model, ModelInfo
from visionfleet.pipeline.envvars import env_float
from visionfleet.pipeline.labels import imagenet_class_names

DEFAULT_RATE = 20_000.0


class StandinModel(Model):
    def __init__(self, max_batch_size: int, images_per_s: float = DEFAULT_RATE) -> None:
        names = imagenet_class_names()
        self.info = ModelInfo("standin", names, geometry=Geometry(), max_batch_size=max_batch_size)
        self.images_per_s = images_per_s
        self._row = np.full(len(names), 1 / len(names), dtype=np.float32)
        self._row[:5] = np.linspace(0.05, 0.01, 5)  # a definite top 5, as a real model gives
        self._row /= self._row.sum()

    def predict(self, batch: np.ndarray) -> np.ndarray:
        time.sleep(len(batch) / self.images_per_s)  # sleeps without the GIL, like a device call
        return np.broadcast_to(self._row, (len(batch), len(self._row)))


def build(settings) -> StandinModel:
    return StandinModel(settings.max_batch_size, env_float("VISIONFLEET_STANDIN_RATE", DEFAULT_RATE, minimum=1.0))

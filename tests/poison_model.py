"""A model plug-in that kills its own process on a pure red picture: a
stand-in for an input that crashes a decoder or a GPU driver."""
import os
import signal

import numpy as np

from visionfleet.pipeline.labels import imagenet_class_names
from visionfleet.pipeline.model import Model, ModelInfo


class PoisonModel(Model):
    def __init__(self, max_batch_size: int) -> None:
        self.info = ModelInfo("poison", imagenet_class_names(), max_batch_size=max_batch_size)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        red = (batch[..., 0] > 240) & (batch[..., 1] < 15) & (batch[..., 2] < 15)
        if red.reshape(len(batch), -1).all(axis=1).any():
            os.kill(os.getpid(), signal.SIGKILL)
        probs = np.full((len(batch), 1000), 1e-3, dtype=np.float32)
        probs[:, 0] = 1 - 999e-3
        return probs


def build(settings) -> PoisonModel:
    return PoisonModel(settings.max_batch_size)

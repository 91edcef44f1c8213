"""A model plug-in that is slow to load and to predict (VISIONFLEET_TEST_LOAD_S, VISIONFLEET_TEST_PREDICT_S):
a stand-in for a large model, so a test can look at a worker while it loads and while a batch runs."""
import os
import time

import numpy as np

from visionfleet.pipeline.labels import imagenet_class_names
from visionfleet.pipeline.model import Model, ModelInfo


class SlowModel(Model):
    def __init__(self, max_batch_size: int) -> None:
        self.info = ModelInfo("slow", imagenet_class_names(), max_batch_size=max_batch_size)
        self.predict_s = float(os.environ.get("VISIONFLEET_TEST_PREDICT_S", "0"))

    def predict(self, batch: np.ndarray) -> np.ndarray:
        time.sleep(self.predict_s)
        return np.full((len(batch), 1000), 1e-3, dtype=np.float32)


def build(settings) -> SlowModel:
    time.sleep(float(os.environ.get("VISIONFLEET_TEST_LOAD_S", "0")))
    return SlowModel(settings.max_batch_size)

"""The naive design visionfleet must beat: one Celery task per image, batch 1.

What a user who has never heard of batching writes: each pool process loads
the model once, and every task opens one file with Pillow (full decode),
resizes, crops, and runs the model on that one image. ``NAIVE_RUNTIME``
picks eager torch or ONNX Runtime (one thread per process either way).

    NAIVE_BROKER=redis://127.0.0.1:6379/14 NAIVE_RUNTIME=onnxruntime \\
        celery -A bench.naive worker -c 2 -Q naive
"""
import os

import numpy as np
from celery import Celery
from celery.signals import worker_process_init
from PIL import Image

BROKER = os.environ.get("NAIVE_BROKER", "redis://127.0.0.1:6379/14")
app = Celery("naive", broker=BROKER, backend=BROKER)
app.conf.update(task_serializer="json", result_serializer="json", accept_content=["json"],
                task_default_queue="naive", worker_prefetch_multiplier=1, worker_hijack_root_logger=False)

_predict = None


@worker_process_init.connect
def _load(**_) -> None:
    global _predict
    import torch

    from visionfleet.pipeline.engines import RuntimeSettings
    from visionfleet.pipeline.model_loader import load_model

    torch.set_num_threads(1)
    runtime = os.environ.get("NAIVE_RUNTIME", "torch")
    _predict = load_model("efficientnet_lite0", RuntimeSettings(runtime=runtime, precision="fp32", threads=1)).predict


def _crop(path: str) -> np.ndarray:
    img = Image.open(path).convert("RGB")
    scale = 256 / min(img.size)
    img = img.resize((round(img.width * scale), round(img.height * scale)), Image.BILINEAR)
    left, top = (img.width - 224) // 2, (img.height - 224) // 2
    return np.asarray(img.crop((left, top, left + 224, top + 224)))


@app.task(name="naive.classify")
def classify(path: str) -> int:
    return int(_predict(_crop(path)[None])[0].argmax())

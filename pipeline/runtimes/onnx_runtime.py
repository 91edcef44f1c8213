"""ONNX Runtime: a model exported by ``onnx_export`` (fp32 or quantized int8), run on the CPU.

Why one thread per run, and a batch cut into slices run side by side: this
network is mostly small depthwise and 1x1 convolutions, and ONNX Runtime's
intra-op threads synchronise at every one of them. Measured on 2 cores,
batch 32: two threads inside one run did 118 images/s fp32 and 181 int8;
the same batch as slices of 8 on two threads, one thread per run, did 132
and 211. A run with one thread also never spins, so the worker's decode
threads get the cores between batches.
"""
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import onnxruntime as ort

from visionfleet.pipeline.model import Model, ModelInfo
from visionfleet.pipeline.runtimes.onnx_names import EMBEDDING, INPUT, OUTPUT

SLICE = 8  # images per run: smaller slices measured no faster, larger ones slower


def session(onnx: bytes) -> ort.InferenceSession:
    """A session whose runs each compute on the calling thread alone (runs are thread-safe)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(onnx, options, providers=["CPUExecutionProvider"])


class OnnxModel(Model):
    def __init__(self, onnx: bytes, info: ModelInfo, *, threads: int) -> None:
        self.info = info
        self._session = session(onnx)
        self._threads = threads
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="onnx") if threads > 1 else None

    def predict(self, batch: np.ndarray) -> np.ndarray:
        return self._sliced(batch, [OUTPUT])[0]

    def predict_embedded(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        probs, vectors = self._sliced(batch, [OUTPUT, EMBEDDING])
        return probs, vectors.reshape(len(batch), -1)

    def _sliced(self, batch: np.ndarray, outputs: list[str]) -> list[np.ndarray]:
        batch = np.ascontiguousarray(batch, dtype=np.uint8)
        # Enough slices to give every thread one, none larger than SLICE.
        step = max(1, min(SLICE, -(-len(batch) // self._threads)))
        slices = [batch[i:i + step] for i in range(0, len(batch), step)]
        if self._pool is None or len(slices) <= 1:
            return self._session.run(outputs, {INPUT: batch})
        runs = list(self._pool.map(lambda part: self._session.run(outputs, {INPUT: part}), slices))
        return [np.concatenate(column) for column in zip(*runs)]

"""ONNX Runtime: a model exported by ``onnx_export`` (fp32 or quantized int8), run on the CPU.

Why these session options: the worker's decode threads share the cores
with the model, so the runtime gets the process's thread budget and does
not spin-wait between batches (spinning burns the cores decode needs).
"""
import numpy as np
import onnxruntime as ort

from visionfleet.pipeline.model import Model, ModelInfo
from visionfleet.pipeline.runtimes.onnx_names import INPUT


def session(onnx: bytes, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(onnx, options, providers=["CPUExecutionProvider"])


class OnnxModel(Model):
    def __init__(self, onnx: bytes, info: ModelInfo, *, threads: int) -> None:
        self.info = info
        self._session = session(onnx, threads)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        return self._session.run(None, {INPUT: np.ascontiguousarray(batch, dtype=np.uint8)})[0]

"""A model's forward pass replayed as captured CUDA graphs, on a GPU.

Why: eager PyTorch launches EfficientNet's hundred-odd kernels one Python
call at a time, and each call gives up and takes back the GIL. In a worker
the decode threads want the GIL too, so the forward pass waits on them.
Measured on an H200, fp16, batch 128, with 16 threads decoding JPEGs beside
it: 735 images/s eager, 10,887 as graphs. A captured graph is one call: the
batch is copied into a fixed input buffer, the graph replays every kernel,
the output buffer is read.

A graph has fixed shapes, so batches are padded up to a bucket, a power of
two up to ``max_batch_size``; each bucket is captured the first time a batch
of that size comes (the worker's warm-up captures the largest). Rows are
independent in eval mode, so padding never changes a real row's answer.
"""
import logging
import threading
from collections.abc import Callable

import numpy as np
import torch

log = logging.getLogger(__name__)

# uint8 NHWC on the device -> float32 rows on the device (probabilities; with embeddings beside them, for some)
Forward = Callable[[torch.Tensor], torch.Tensor]


class CudaGraphs:
    """``forward`` as one captured graph per batch-size bucket; calls are serialised (one set of buffers)."""

    def __init__(self, forward: Forward, device: torch.device, max_batch_size: int) -> None:
        self._forward, self._device, self._max = forward, device, max_batch_size
        self._graphs: dict[int, tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor]] = {}
        self._lock = threading.Lock()

    def bucket(self, rows: int) -> int:
        return min(self._max, 1 << (rows - 1).bit_length())

    def run(self, batch: torch.Tensor) -> np.ndarray:
        """``forward``'s rows for a uint8 NHWC batch on the host."""
        rows = len(batch)
        with self._lock:
            graph, inputs, outputs = self._graph(self.bucket(rows), batch.shape[1:])
            inputs[:rows].copy_(batch)
            graph.replay()
            return outputs[:rows].cpu().numpy()

    def _graph(self, size: int, shape: torch.Size) -> tuple:
        if size not in self._graphs:
            inputs = torch.zeros((size, *shape), dtype=torch.uint8, device=self._device)
            # Warm-up runs on a side stream first, as PyTorch asks: they settle lazy
            # initialisation (cuDNN handles, autocast state) outside the capture.
            side = torch.cuda.Stream(self._device)
            side.wait_stream(torch.cuda.current_stream(self._device))
            with torch.cuda.stream(side):
                for _ in range(2):
                    self._forward(inputs)
            torch.cuda.current_stream(self._device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                outputs = self._forward(inputs)
            self._graphs[size] = (graph, inputs, outputs)
            log.info("CUDA graph captured", extra={"batch": size})
        return self._graphs[size]

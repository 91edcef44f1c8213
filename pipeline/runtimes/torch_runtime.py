"""PyTorch runtime: any ``nn.Module`` or TorchScript module that maps a
normalised NCHW float batch to logits.

Why the knobs: on CPU, channels_last roughly doubles EfficientNet's speed;
bf16 autocast helps on CPUs that have it; fp16 autocast is the usual GPU
choice; on a GPU the forward pass replays as CUDA graphs (``cuda_graphs``).
Normalisation runs here, on the whole batch and on the device, so
decode threads only ship uint8 crops (4x less memory than float).
"""
import logging

import numpy as np
import torch

from visionfleet.pipeline.model import Model, ModelInfo
from visionfleet.pipeline.runtimes.cuda_graphs import CudaGraphs

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_AUTOCAST = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def pick_device(requested: str = "auto") -> torch.device:
    """CUDA when present, else CPU; ``requested`` overrides (e.g. ``cuda:1``)."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


class TorchModel(Model):
    def __init__(
        self,
        module: torch.nn.Module,
        info: ModelInfo,
        *,
        device: torch.device,
        precision: str = "fp32",
        mean: tuple[float, ...] = IMAGENET_MEAN,
        std: tuple[float, ...] = IMAGENET_STD,
    ) -> None:
        if precision not in _AUTOCAST:
            raise ValueError(f"precision {precision!r} is not one of {', '.join(_AUTOCAST)}")
        self.info = info
        self.device = device
        if device.type == "cuda" and device.index is not None:
            # The process's current GPU: what else it puts on "cuda" (JPEG decode) lands beside the model.
            torch.cuda.set_device(device)
        self._autocast = _AUTOCAST[precision]
        self._module = module.eval().to(device, memory_format=torch.channels_last)
        scale = 255.0
        self._mean = torch.tensor(mean, device=device).view(1, 3, 1, 1) * scale
        self._std = torch.tensor(std, device=device).view(1, 3, 1, 1) * scale
        self._graphs = CudaGraphs(self._forward, device, info.max_batch_size) if device.type == "cuda" else None

    @torch.inference_mode()
    def predict(self, batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(batch))
        if self._graphs is not None:
            try:
                return self._graphs.run(x)
            except RuntimeError as exc:  # a capture this GPU or driver refuses: eager still works
                log.warning("CUDA graphs off: capture failed; running eager", extra={"error": repr(exc)})
                self._graphs = None
        return self._forward(x.to(self.device, non_blocking=True)).cpu().numpy()

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 NHWC on the device -> float32 probabilities on the device."""
        # NHWC uint8 viewed as NCHW is already channels_last in memory: no copy.
        x = x.permute(0, 3, 1, 2).float()
        x = ((x - self._mean) / self._std).contiguous(memory_format=torch.channels_last)
        if self._autocast is None:
            logits = self._module(x)
        else:
            # No weight-cast cache: a CUDA graph must not capture casts that a later call would skip.
            with torch.autocast(device_type=self.device.type, dtype=self._autocast, cache_enabled=False):
                logits = self._module(x)
        return torch.softmax(logits.float(), dim=1)

"""PyTorch runtime: any ``nn.Module`` or TorchScript module that maps a
normalised NCHW float batch to logits (or, as ``TorchIO`` says, another
layout, dtype, normalisation and activation, and an embedding beside).

Why the knobs: on CPU, channels_last roughly doubles EfficientNet's speed;
bf16 autocast helps on CPUs that have it; fp16 autocast is the usual GPU
choice; on a GPU the forward pass replays as CUDA graphs (``cuda_graphs``).
Normalisation runs here, on the whole batch and on the device, so
decode threads only ship uint8 crops (4x less memory than float).
"""
import logging
from dataclasses import dataclass

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


@dataclass(frozen=True)
class TorchIO:
    """What a module takes and gives; the defaults are an ImageNet classifier's (normalised NCHW float ->
    logits). A float input is ``(pixel * scale - mean) / std``; a uint8 one is the pixels as they are. The
    module may return a tensor (the output), a tuple (the output, then the embedding) or a dict (both by
    ``output`` and ``embedding``, their names)."""

    layout: str = "NCHW"
    dtype: str = "float32"
    scale: float = 1 / 255
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    activation: str = "softmax"  # or sigmoid, or none (the module gives probabilities)
    output: str | None = None
    embedding: str | None = None


class TorchModel(Model):
    def __init__(self, module: torch.nn.Module, info: ModelInfo, *, device: torch.device, precision: str = "fp32",
                 io: TorchIO = TorchIO()) -> None:
        if precision not in _AUTOCAST:
            raise ValueError(f"precision {precision!r} is not one of {', '.join(_AUTOCAST)}")
        self.info = info
        self.device = device
        if device.type == "cuda" and device.index is not None:
            # The process's current GPU: what else it puts on "cuda" (JPEG decode) lands beside the model.
            torch.cuda.set_device(device)
        self._autocast = _AUTOCAST[precision]
        self._io = io
        self._nchw = io.layout == "NCHW"
        self._module = module.eval().to(device, memory_format=torch.channels_last if self._nchw else torch.preserve_format)
        shape = (1, 3, 1, 1) if self._nchw else (1, 1, 1, 3)
        # (pixel * scale - mean) / std as (pixel - mean / scale) / (std / scale): the ImageNet default is the
        # (pixel - 255 mean) / (255 std) it always was.
        self._mean = torch.tensor([m / io.scale for m in io.mean], device=device).view(shape)
        self._std = torch.tensor([s / io.scale for s in io.std], device=device).view(shape)
        self._graphs = None
        if device.type == "cuda":
            self._graphs = {False: CudaGraphs(self._forward, device, info.max_batch_size),
                            True: CudaGraphs(self._forward_embedded, device, info.max_batch_size)}

    def predict(self, batch: np.ndarray) -> np.ndarray:
        return self._run(batch, embedded=False)

    def predict_embedded(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        both = self._run(batch, embedded=True)
        classes = len(self.info.class_names)
        return both[:, :classes], both[:, classes:]

    @torch.inference_mode()
    def _run(self, batch: np.ndarray, *, embedded: bool) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(batch))
        if self._graphs is not None:
            try:
                return self._graphs[embedded].run(x)
            except RuntimeError as exc:  # a capture this GPU or driver refuses: eager still works
                log.warning("CUDA graphs off: capture failed; running eager", extra={"error": repr(exc)})
                self._graphs = None
        forward = self._forward_embedded if embedded else self._forward
        return forward(x.to(self.device, non_blocking=True)).cpu().numpy()

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 NHWC on the device -> float32 probabilities on the device."""
        return self.outputs(x)[0]

    def _forward_embedded(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 NHWC on the device -> probabilities and embedding side by side, one float32 row per image
        (one tensor: a CUDA graph has one output buffer)."""
        probs, vectors = self.outputs(x)
        return torch.cat([probs, vectors], dim=1)

    def outputs(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """uint8 NHWC on the device -> float32 probabilities and, where the module gives one, the embedding
        (flattened), on the device."""
        if self._nchw:
            # NHWC uint8 viewed as NCHW is already channels_last in memory: no copy.
            x = x.permute(0, 3, 1, 2)
        if self._io.dtype == "float32":
            x = (x.float() - self._mean) / self._std
        x = x.contiguous(memory_format=torch.channels_last if self._nchw else torch.contiguous_format)
        if self._autocast is None:
            out = self._module(x)
        else:
            # No weight-cast cache: a CUDA graph must not capture casts that a later call would skip.
            with torch.autocast(device_type=self.device.type, dtype=self._autocast, cache_enabled=False):
                out = self._module(x)
        logits, vectors = self._unpack(out)
        logits = logits.float().flatten(1)
        probs = {"softmax": lambda t: torch.softmax(t, dim=1), "sigmoid": torch.sigmoid,
                 "none": lambda t: t}[self._io.activation](logits)
        return probs, None if vectors is None else vectors.float().flatten(1)

    def _unpack(self, out) -> tuple[torch.Tensor, torch.Tensor | None]:
        if isinstance(out, dict):
            return out[self._io.output], out.get(self._io.embedding) if self._io.embedding else None
        if isinstance(out, (tuple, list)):
            return out[0], out[1] if len(out) > 1 else None
        return out, None

"""PyTorch runtime: any ``nn.Module`` or TorchScript module that maps a
normalised NCHW float batch to logits (or, for a model that gives embeddings,
to logits and embeddings: ``ModelInfo.embedding_dim``).

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
        # Graphs for probabilities alone, and (when the net gives them) for probabilities and embeddings side
        # by side in one tensor: each kind is captured when first asked for.
        cuda = device.type == "cuda"
        self._graphs = {embedded: CudaGraphs(forward, device, info.max_batch_size) if cuda else None
                        for embedded, forward in ((False, self._forward), (True, self._forward_embedded))}

    @torch.inference_mode()
    def predict(self, batch: np.ndarray) -> np.ndarray:
        return self._run(batch, embedded=False)

    @torch.inference_mode()
    def predict_embedded(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.info.embedding_dim is None:
            return super().predict_embedded(batch)
        both = self._run(batch, embedded=True)
        return both[:, :-self.info.embedding_dim], both[:, -self.info.embedding_dim:]

    def _run(self, batch: np.ndarray, *, embedded: bool) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(batch))
        if (graphs := self._graphs[embedded]) is not None:
            try:
                return graphs.run(x)
            except RuntimeError as exc:  # a capture this GPU or driver refuses: eager still works
                log.warning("CUDA graphs off: capture failed; running eager", extra={"error": repr(exc)})
                self._graphs = {False: None, True: None}
        forward = self._forward_embedded if embedded else self._forward
        return forward(x.to(self.device, non_blocking=True)).cpu().numpy()

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 NHWC on the device -> float32 probabilities on the device."""
        return self._outputs(x)[0]

    def _forward_embedded(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 NHWC on the device -> float32 probabilities, then embeddings, in each row, on the device."""
        probs, embeddings = self._outputs(x)
        return torch.cat((probs, embeddings.float()), dim=1)

    def _outputs(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        # NHWC uint8 viewed as NCHW is already channels_last in memory: no copy.
        x = x.permute(0, 3, 1, 2).float()
        x = ((x - self._mean) / self._std).contiguous(memory_format=torch.channels_last)
        if self._autocast is None:
            out = self._module(x)
        else:
            # No weight-cast cache: a CUDA graph must not capture casts that a later call would skip.
            with torch.autocast(device_type=self.device.type, dtype=self._autocast, cache_enabled=False):
                out = self._module(x)
        # A net that gives embeddings returns (logits, embeddings); its embeddings are dropped unless asked for.
        logits, embeddings = out if self.info.embedding_dim is not None else (out, None)
        return torch.softmax(logits.float(), dim=1), embeddings

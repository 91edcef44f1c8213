"""Export a torch classifier to ONNX, with its pre- and postprocessing inside the graph.

The exported graph takes what decode produces, uint8 NHWC RGB crops, and
returns probabilities: normalisation, the NHWC->NCHW transpose and the
softmax run in the runtime's kernels, so a worker hands it the batch as is.
The batch axis is dynamic, so one file serves every batch size.
"""
import io
import warnings

import torch

from visionfleet.pipeline.runtimes.torch_runtime import IMAGENET_MEAN, IMAGENET_STD
from visionfleet.pipeline.runtimes.onnx_names import INPUT, OPSET, OUTPUT



class _WithPrePost(torch.nn.Module):
    def __init__(self, net: torch.nn.Module, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1) * 255.0)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1) * 255.0)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = (images.permute(0, 3, 1, 2).float() - self.mean) / self.std
        return torch.softmax(self.net(x), dim=1)


def to_onnx(net: torch.nn.Module, size: tuple[int, int], *, mean: tuple[float, ...] = IMAGENET_MEAN,
            std: tuple[float, ...] = IMAGENET_STD) -> bytes:
    """The ONNX bytes of ``net`` (normalised NCHW float -> logits) wrapped to take uint8 NHWC crops of ``size``
    (height, width)."""
    module = _WithPrePost(net.to("cpu", memory_format=torch.contiguous_format), mean, std).eval()
    if isinstance(net, torch.jit.ScriptModule):
        # A TorchScript file cannot be traced from inside a Python module: script the wrapper too.
        module = torch.jit.script(module)
    example = torch.zeros((2, *size, 3), dtype=torch.uint8)
    out = io.BytesIO()
    # The TorchScript-based exporter (dynamo=False) handles TorchScript
    # modules too and needs no onnxscript; its deprecation notices are noise
    # in a worker's log.
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (example,), out, dynamo=False, opset_version=OPSET, input_names=[INPUT],
                          output_names=[OUTPUT], dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}})
    return out.getvalue()

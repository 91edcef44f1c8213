"""EfficientNet (efficientnet_lite_pytorch) as a net that gives its pooled features beside its logits.

The pooled vector (global average pooling of the head convolution, 1,280 values for Lite0) is what the
classifier reads; computing both from one pass costs nothing over the logits alone, so every runtime
runs this form: torch drops the features when they are not asked for, and ONNX Runtime exports both
as outputs and fetches only what a call asks for.
"""
import torch


class PooledEfficientNet(torch.nn.Module):
    """normalised NCHW float -> (logits, pooled features): the module's own ``forward``, split where it pools."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pooled = self.net._avg_pooling(self.net.extract_features(x)).flatten(1)
        return self.net._fc(self.net._dropout(pooled)), pooled

"""Which runtime and precision run a model: a pure decision from what is asked and what is here.

``auto`` picks the fastest runtime here that runs the precision asked for:
torch on a CUDA GPU (ONNX Runtime's PyPI build is CPU-only), ONNX Runtime on
a CPU, except that int8 always runs on ONNX Runtime and fp16/bf16 on torch.
Precision ``auto`` is fp16 on a GPU and exact fp32 on a CPU. A combination a
runtime cannot run is refused with the ones it can, whatever the machine,
so ``relabel`` can check it before anything is enqueued.
"""
from dataclasses import dataclass

from visionfleet.pipeline.errors import ConfigError

RUNTIMES = ("auto", "torch", "onnxruntime")
PRECISIONS = ("auto", "fp32", "fp16", "bf16", "int8")

# ONNX Runtime's CPU build has fast kernels for fp32 and int8 only; torch
# has no int8 path for an arbitrary module.
SUPPORTED = {
    "torch": ("fp32", "fp16", "bf16"),
    "onnxruntime": ("fp32", "int8"),
}


@dataclass(frozen=True)
class Engine:
    """A resolved choice: the runtime that runs the model and the precision it runs at."""

    runtime: str
    precision: str

    def __str__(self) -> str:
        return f"{self.runtime}/{self.precision}"


def choose_engine(runtime: str, precision: str, *, cuda: bool) -> Engine:
    """Resolve ``auto`` and check the pair, for a worker with (``cuda``) or without a GPU."""
    if runtime not in RUNTIMES:
        raise ConfigError(f"runtime {runtime!r} is not one of {', '.join(RUNTIMES)}")
    if precision not in PRECISIONS:
        raise ConfigError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    if runtime == "auto":
        runtime = _fastest(precision, cuda=cuda)
    if precision == "auto":
        precision = "fp16" if cuda and runtime != "onnxruntime" else "fp32"
    if precision not in SUPPORTED[runtime]:
        others = [r for r, ok in SUPPORTED.items() if precision in ok]
        raise ConfigError(f"precision {precision} does not run on {runtime}: it runs {', '.join(SUPPORTED[runtime])}; "
                          f"for {precision} use runtime {' or '.join(others)}")
    return Engine(runtime, precision)


def _fastest(precision: str, *, cuda: bool) -> str:
    if precision == "int8":
        return "onnxruntime"  # its only path, so it takes the CPU even on a GPU worker
    if cuda or precision in ("fp16", "bf16"):
        return "torch"
    return "onnxruntime"

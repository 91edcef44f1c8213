"""Which runtime and precision run a model: a decision from what is asked and what is here.

``auto`` picks the fastest runtime here that runs the precision asked for:
torch on a CUDA GPU (ONNX Runtime's PyPI build is CPU-only), ONNX Runtime on
a CPU, except that int8 always runs on ONNX Runtime and fp16/bf16 on torch.
Precision ``auto`` is fp16 on a GPU and exact fp32 on a CPU. A combination a
runtime cannot run is refused with the ones it can, whatever the machine,
so ``relabel`` can check it before anything is enqueued. A combination that
runs but is a trap on this machine is refused too, with the slowdown and the
alternative: fp16 on a CPU, and bf16 on a CPU without bf16 instructions.
"""
import os
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

# The CPU flags (/proc/cpuinfo) of instructions that compute in bf16: x86's AVX-512 BF16 and AMX, Arm's BF16.
BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})

# Why fp16/bf16 on a CPU are refused, against fp32 as `auto` runs it there (ONNX Runtime): EfficientNet-Lite0,
# 64 images, batch 32, one thread, on an AMD EPYC with AVX-512 BF16 (README, "Runtimes and precision").
# fp32 73 images/s; fp16 3.4 (autocast converts around every op); bf16 69 with bf16 instructions,
# 27 with oneDNN held to AVX-512 without them, 3.0 held to AVX2.
CPU_TRAPS = {
    "fp16": "fp16 on a CPU runs about 20x slower than fp32",
    "bf16": "bf16 on a CPU without bf16 instructions (avx512_bf16, amx_bf16) runs 3x to 25x slower than fp32",
}


@dataclass(frozen=True)
class Engine:
    """A resolved choice: the runtime that runs the model and the precision it runs at."""

    runtime: str
    precision: str

    def __str__(self) -> str:
        return f"{self.runtime}/{self.precision}"


def choose_engine(runtime: str, precision: str, *, cuda: bool, cpu_bf16: bool = False) -> Engine:
    """Resolve ``auto`` and check the pair, for a worker with (``cuda``) or without a GPU; ``cpu_bf16``:
    whether its CPU computes in bf16 (``cpu_has_bf16``)."""
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
    if not cuda and precision in CPU_TRAPS and not (precision == "bf16" and cpu_bf16):
        raise ConfigError(f"{CPU_TRAPS[precision]}, and the machine that runs it has no CUDA GPU; use --precision fp32 "
                          "(or int8), or leave it auto: fp16 on a GPU, fp32 on a CPU")
    return Engine(runtime, precision)


def _fastest(precision: str, *, cuda: bool) -> str:
    if precision == "int8":
        return "onnxruntime"  # its only path, so it takes the CPU even on a GPU worker
    if cuda or precision in ("fp16", "bf16"):
        return "torch"
    return "onnxruntime"


def has_cuda(device: str) -> bool:
    """Whether this worker runs on a CUDA GPU. Without the NVIDIA driver there is none, and
    the answer costs nothing; only where the driver is loaded is torch imported to ask.
    A CUDA device asked for where there is no driver is refused now, not when the model loads."""
    driver = os.path.exists("/proc/driver/nvidia/version")
    if device.startswith("cuda") and not driver:
        raise ConfigError(f"VISIONFLEET_DEVICE={device}, but this machine has no NVIDIA driver (no CUDA GPU); "
                          "set VISIONFLEET_DEVICE=auto or cpu, or run this where the GPU is")
    if device != "auto":
        return device.startswith("cuda")
    if not driver:
        return False
    import torch

    return torch.cuda.is_available()


def cpu_has_bf16() -> bool:
    """Whether this machine's CPU has bf16 instructions, from its flags (Linux); False where they cannot be read."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as cpuinfo:
            for line in cpuinfo:
                name, _, value = line.partition(":")
                if name.strip() in ("flags", "Features"):  # x86, Arm
                    return not BF16_FLAGS.isdisjoint(value.split())
    except OSError:
        pass
    return False


def package_engine(kind: str, runtime: str, precision: str, *, cuda: bool) -> Engine:
    """The runtime and precision a package of ``kind`` runs at, on a machine with (``cuda``) or without a GPU:
    ONNX on ONNX Runtime (fp32 or int8, on the CPU), TorchScript on torch; ConfigError, with the fix, for
    any other runtime asked for."""
    if kind == "onnx":
        if runtime == "torch":
            raise ConfigError("an ONNX model package runs on ONNX Runtime, not torch; use --runtime auto or "
                              "onnxruntime, or give the model as TorchScript (model.pt) to run it on torch")
        return choose_engine("onnxruntime", precision, cuda=False)
    if runtime == "onnxruntime":
        raise ConfigError("a TorchScript model package (model.pt) runs on torch, not ONNX Runtime; use --runtime "
                          "auto or torch, or export the model to ONNX (model.onnx) for ONNX Runtime and int8")
    return choose_engine("torch", precision, cuda=cuda, cpu_bf16=not cuda and cpu_has_bf16())

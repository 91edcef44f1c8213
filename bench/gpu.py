"""Everything issue 7 asks to measure on a GPU, in one run (by hand, on a CUDA machine).

    python -m bench.gpu --out gpu.json [--photos 2048] [--seconds 1.5]

On the same JPEGs (1280x960, cut from real photos):
- model alone through the ``Model`` contract (uint8 crops in, probabilities
  out, copies included), replayed as CUDA graphs and eager, and the eager
  module alone on the GPU, at fp32, fp16 and bf16, batch 64, 128 and 256;
- the model (fp16, batch 128) while 16 threads decode JPEGs on the CPU, as
  in a worker: eager and as CUDA graphs;
- JPEG decode to the model's crop: the CPU path (``decode_image``) from 16
  threads, and the GPU path as a worker runs it (headers in 16 threads, one
  batched nvJPEG call per 128), and that call alone;
- end to end: the embedded ``relabel --wait`` on the GPU at fp16, batch 128,
  JPEGs decoded on the GPU and on the CPU, 1 to 4 worker processes;
- TensorRT and ONNX Runtime's CUDA provider where installed (else recorded
  as absent).
Each section is written to ``--out`` as soon as it ends, and a failing one
records its error and the rest still run.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.e2e_bench import make_photos  # noqa: E402

SIZE = (1280, 960)


def rate(run, images: int, seconds: float) -> float:
    """Images per second of ``run`` (which handles ``images``), repeated for about ``seconds``."""
    run()  # warm-up: first-call costs are not throughput
    done, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds or done == 0:
        run()
        done += images
    return round(done / elapsed, 1)


def environment() -> dict:
    import torch

    out = {"torch": torch.__version__, "cuda": torch.version.cuda, "gpu": torch.cuda.get_device_name(0),
           "cpus": os.cpu_count()}
    for name in ("torchvision", "onnxruntime", "tensorrt"):
        try:
            out[name] = __import__(name).__version__
        except ImportError:
            out[name] = None
    if out["onnxruntime"]:
        import onnxruntime

        out["onnxruntime_providers"] = onnxruntime.get_available_providers()
    return out


def model_alone(crops: np.ndarray, seconds: float) -> dict:
    import torch

    out = {}
    for precision in ("fp32", "fp16", "bf16"):
        for batch in (64, 128, 256):
            model = _model(precision, batch)
            x = np.ascontiguousarray(crops[:batch])
            graphs = rate(lambda: model.checked_predict(x), batch, seconds)
            model._graphs = None
            eager = rate(lambda: model.checked_predict(x), batch, seconds)
            module = _module_alone(model, batch, precision, seconds)
            out[f"{precision}/{batch}"] = {"contract_graphs": graphs, "contract_eager": eager, "module_eager": module}
            print(precision, batch, out[f"{precision}/{batch}"], flush=True)
            del model
            torch.cuda.empty_cache()
    return out


def _model(precision: str, batch: int):
    from visionfleet.pipeline.engines import RuntimeSettings
    from visionfleet.pipeline.model_loader import load_model

    return load_model("efficientnet_lite0", RuntimeSettings(runtime="torch", precision=precision, device="cuda",
                                                            max_batch_size=batch))


def _module_alone(model, batch: int, precision: str, seconds: float) -> float:
    """The module on a normalised batch already on the GPU: the ceiling the contract's copies sit under."""
    import torch

    x = torch.randn(batch, 3, 224, 224, device="cuda").contiguous(memory_format=torch.channels_last)
    dtype = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]

    @torch.inference_mode()
    def run():
        if dtype is None:
            model._module(x)
        else:
            with torch.autocast("cuda", dtype=dtype):
                model._module(x)
        torch.cuda.synchronize()

    return rate(run, batch, seconds)


def contended(crops: np.ndarray, datas: list[bytes], seconds: float) -> dict:
    """The model at fp16, batch 128, while 16 threads decode on the CPU, as in a worker: eager and as graphs."""
    import threading

    from visionfleet.pipeline.decode import Geometry, decode_image

    stop = threading.Event()

    def decode_forever():
        while not stop.is_set():
            for d in datas[:64]:
                decode_image(d, Geometry())

    model, x, out = _model("fp16", 128), np.ascontiguousarray(crops[:128]), {}
    threads = [threading.Thread(target=decode_forever) for _ in range(16)]
    for t in threads:
        t.start()
    try:
        out["graphs"] = rate(lambda: model.checked_predict(x), 128, seconds)
        model._graphs = None
        out["eager"] = rate(lambda: model.checked_predict(x), 128, seconds)
    finally:
        stop.set()
        for t in threads:
            t.join()
    print("contended", out, flush=True)
    return out


def decode(datas: list[bytes], seconds: float) -> dict:
    """Files to crops: the CPU path from 16 threads; the GPU path as a worker runs it, headers in
    16 threads, then one batched call per 128; and that batched call alone."""
    from visionfleet.pipeline.decode import Geometry, decode_image
    from visionfleet.pipeline.gpu_decode import GpuJpegDecoder, finish

    geometry, gpu, out = Geometry(), GpuJpegDecoder("cuda"), {}

    def batches(prepared):
        for i in range(0, len(prepared), 128):
            finish(prepared[i:i + 128])

    with ThreadPoolExecutor(16) as pool:
        out["cpu/16_threads"] = rate(lambda: list(pool.map(lambda d: decode_image(d, geometry), datas)),
                                     len(datas), seconds)
        out["gpu/16_threads_batch_128"] = rate(lambda: batches(list(pool.map(lambda d: gpu(d, geometry), datas))),
                                               len(datas), seconds)
        prepared = list(pool.map(lambda d: gpu(d, geometry), datas))
    out["gpu_batched_call_only/128"] = rate(lambda: batches(prepared), len(datas), seconds)
    print("decode", out, flush=True)
    return out


def end_to_end(photos: Path, work: Path) -> dict:
    out = {}
    for decoder, workers in (("gpu", 1), ("cpu", 1), ("gpu", 2), ("cpu", 4)):
        key = f"decode_{decoder}/workers_{workers}"
        out[key] = _relabel(photos, work / key.replace("/", "_"), decoder, workers)
        print(key, out[key], flush=True)
    return out


def _relabel(photos: Path, work: Path, decoder: str, workers: int) -> dict:
    env = {**os.environ, "VISIONFLEET_HOME": str(work / "home"), "VISIONFLEET_MODEL_CACHE": str(work.parent / "models"),
           "VISIONFLEET_SPOT_NOTICE_URL": "off", "VISIONFLEET_METRICS_PORT": "off",
           "VISIONFLEET_RUNTIME": "torch", "VISIONFLEET_PRECISION": "fp16", "VISIONFLEET_DEVICE": "cuda",
           "VISIONFLEET_MAX_BATCH_SIZE": "128", "VISIONFLEET_IO_THREADS": "16", "VISIONFLEET_DECODE": decoder}
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "visionfleet.cli", "relabel", str(photos), "--output",
                             str(work / "labels"), "--wait", "--workers", str(workers), "--shard-size", "256"],
                            env=env, capture_output=True, text=True, timeout=300)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        return {"exit": result.returncode, "stderr": result.stderr[-3000:]}
    job = result.stdout.strip().splitlines()[-1]
    success = json.loads((work / "labels" / job / "_SUCCESS.json").read_text())
    images = sum(1 for _ in photos.iterdir())
    span = success["finished_at"] - success["created_at"]
    report = json.loads((work / "labels" / job / "_REPORT.json").read_text())
    return {"report": {k: v for k, v in report.items() if isinstance(v, (int, float, str))},
            "images": images, "ok": success.get("ok", success.get("total")), "engine": success.get("engines"),
            "command_s": round(wall, 2), "command_images_per_s": round(images / wall, 1),
            "job_s": round(span, 2), "job_images_per_s": round(images / span, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--photos", type=int, default=2048)
    parser.add_argument("--seconds", type=float, default=1.5)
    parser.add_argument("--skip", action="append", default=[], help="section to skip (repeatable)")
    args = parser.parse_args()
    results: dict = {}
    work = Path(tempfile.mkdtemp(prefix="vf-gpu-"))
    photos = work / "photos"
    photos.mkdir()
    make_photos(photos, args.photos, SIZE)
    datas = [p.read_bytes() for p in sorted(photos.iterdir())[:512]]
    from visionfleet.pipeline.decode import Geometry, decode_image

    crops = np.stack([decode_image(d, Geometry()) for d in datas[:256]])
    sections = {"environment": environment, "model_alone": lambda: model_alone(crops, args.seconds),
                "contended": lambda: contended(crops, datas, args.seconds),
                "decode": lambda: decode(datas, args.seconds), "end_to_end": lambda: end_to_end(photos, work)}
    for name, section in sections.items():
        if name in args.skip:
            continue
        started = time.perf_counter()
        try:
            results[name] = section()
        except Exception:
            results[name] = {"error": traceback.format_exc()[-3000:]}
        results[f"{name}_s"] = round(time.perf_counter() - started, 1)
        args.out.write_text(json.dumps(results, indent=1))
        print(name, "done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

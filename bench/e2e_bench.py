"""Whole path vs model alone, side by side in one run (by hand, not in CI).

    python -m bench.e2e_bench [--images 256] [--rounds 3] [--broker redis://127.0.0.1:6379/10]

(a) model only: the same 1080p JPEGs, decoded beforehand, through the model
    in full batches, in this process;
(b) whole path: the same files labelled by a real ``visionfleet worker``
    process through the broker, local storage, fetch, decode, model and
    JSONL output, timed from the shard's lease to its last commit.
Both use the same runtime settings (threads, batch size, precision,
allocator). Rounds alternate (a) and (b) because this machine is noisy;
medians and their ratio are printed.
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.samples import bundled  # noqa: E402


def make_photos(folder: Path, count: int, size: tuple[int, int] = (1920, 1080)) -> list[Path]:
    """JPEGs (1080p by default) cut and scaled from real photos, each different."""
    rng = np.random.default_rng(1)
    sources = [Image.open(bundled(n)).convert("RGB") for n in ("chelsea.png", "coffee.png", "astronaut.png")]
    paths = []
    for i in range(count):
        src = sources[i % len(sources)]
        w, h = src.size
        box = (rng.integers(0, w // 4), rng.integers(0, h // 4), w - rng.integers(0, w // 4), h - rng.integers(0, h // 4))
        path = folder / f"{i:05d}.jpg"
        src.resize(size, Image.BILINEAR, box=tuple(int(v) for v in box)).save(path, "JPEG", quality=90)
        paths.append(path)
    return paths


def model_only(model, crops: np.ndarray) -> float:
    size = model.info.max_batch_size
    start = time.perf_counter()
    for i in range(0, len(crops), size):
        model.checked_predict(crops[i:i + size])
    return len(crops) / (time.perf_counter() - start)


def whole_path(env: dict, photos: Path, out: Path, store) -> float:
    result = subprocess.run([sys.executable, "-m", "visionfleet.cli", "relabel", str(photos), "--output", str(out)],
                            env=env, cwd=REPO, capture_output=True, text=True, check=True)
    job_id = result.stdout.strip().splitlines()[-1]
    while (p := store.progress(job_id)).state not in ("succeeded", "failed"):
        time.sleep(0.05)
    assert p.state == "succeeded" and p.errors == 0, p
    return p.done / (p.updated_at - p.started_at)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--broker", default="redis://127.0.0.1:6379/10")
    args = parser.parse_args()
    from visionfleet.workers.allocator import describe, reexec_with_tcmalloc

    reexec_with_tcmalloc(["-m", "bench.e2e_bench", *sys.argv[1:]])  # same allocator as the worker

    import torch

    from visionfleet.checkpoints import open_store
    from visionfleet.pipeline.decode import decode_image
    from visionfleet.pipeline.engines import RuntimeSettings
    from visionfleet.pipeline.model_loader import load_model

    settings = RuntimeSettings.from_env()
    threads = settings.threads
    torch.set_num_threads(threads)
    model = load_model(os.environ.get("VISIONFLEET_MODEL", "efficientnet_lite0"), settings)
    work = Path(tempfile.mkdtemp(prefix="vf-bench-"))
    (work / "photos").mkdir()
    photos = make_photos(work / "photos", args.images)
    crops = np.stack([decode_image(p.read_bytes(), model.info.geometry) for p in photos])
    model_only(model, crops[: model.info.max_batch_size])  # warm-up

    env = {**os.environ, "VISIONFLEET_BROKER_URL": args.broker, "VISIONFLEET_THREADS": str(threads),
           "VISIONFLEET_HOME": str(work / "home"), "PYTHONPATH": str(REPO), "VISIONFLEET_LOCAL_ROOTS": str(work),
           "VISIONFLEET_SPOT_NOTICE_URL": os.environ.get("VISIONFLEET_SPOT_NOTICE_URL", "off"),
           "VISIONFLEET_METRICS_PORT": os.environ.get("VISIONFLEET_METRICS_PORT", "off")}
    worker = subprocess.Popen([sys.executable, "-m", "visionfleet.cli", "worker", "-Q", "bulk", "-c", "1", "-l", "WARNING"],
                              env=env, cwd=REPO)
    store = open_store(args.broker)
    try:
        whole_path(env, work / "photos", work / "out", store)  # warm-up: worker start, model load
        a, b = [], []
        for _ in range(args.rounds):
            a.append(model_only(model, crops))
            b.append(whole_path(env, work / "photos", work / "out", store))
    finally:
        worker.terminate()
        worker.wait()
    ma, mb = statistics.median(a), statistics.median(b)
    print(f"images={args.images} 1080p JPEG, {model.info.engine}, threads={threads}, "
          f"batch={model.info.max_batch_size}, allocator={describe()}")
    print(f"(a) model only on decoded crops: {ma:7.1f} images/s  runs {[round(x, 1) for x in a]}")
    print(f"(b) whole path through a worker: {mb:7.1f} images/s  runs {[round(x, 1) for x in b]}")
    print(f"ratio (b)/(a): {mb / ma:.2f}")


if __name__ == "__main__":
    main()

"""visionfleet against the designs a user would otherwise build, side by side in one run (by hand, not in CI).

    python -m bench.compare [--images 200] [--rounds 2] [--redis redis://127.0.0.1:6379]

On the same JPEGs (1280x960, cut from real photos), in interleaved rounds:
- naive Celery, one task per image, 2 pool processes x 1 thread, batch 1,
  on eager torch and on ONNX Runtime (``bench.naive``);
- Ray Data ``map_batches`` (2 actors, batch 32), when ``ray[data]`` is installed;
- one process: decode, then batches of 32 on eager torch (the reference);
- visionfleet fleet: a standing ``visionfleet worker -Q bulk``, timed over
  ``relabel --wait``, at fp32 and at int8 (warm model cache);
- visionfleet embedded: ``relabel --wait`` with no broker, start-up included,
  warm cache, and the seconds from the command to the first labelled image.
Then the stage limits: decode alone and the runtime alone (fp32, int8), each
on both cores, combined as they share them, and visionfleet's share of each.
Everything runs on loopback; workers never poll the cloud metadata address.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.e2e_bench import make_photos  # noqa: E402

CORES = os.cpu_count() or 1


def timed(run: Callable[[], object], images: int) -> float:
    start = time.perf_counter()
    run()
    return images / (time.perf_counter() - start)


class Bench:
    def __init__(self, work: Path, photos: list[Path], redis_url: str) -> None:
        self.work, self.photos, self.redis = work, photos, redis_url
        self.env = {**os.environ, "PYTHONPATH": str(REPO), "VISIONFLEET_SPOT_NOTICE_URL": "off",
                    "VISIONFLEET_METRICS_PORT": "off",
                    "VISIONFLEET_HOME": str(work / "home"), "VISIONFLEET_MODEL_CACHE": str(work / "models")}
        self.procs: list[subprocess.Popen] = []

    def start(self, args: list[str], **env: str) -> None:
        log = open(self.work / f"proc-{len(self.procs)}.log", "wb")
        self.procs.append(subprocess.Popen([sys.executable, "-m", *args], env={**self.env, **env}, cwd=REPO,
                                           stdout=log, stderr=subprocess.STDOUT))

    def stop_all(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            proc.wait()

    # -- the naive design -------------------------------------------------
    def naive_worker(self, runtime: str, db: int) -> Callable[[], object]:
        url = f"{self.redis}/{db}"
        self.start(["celery", "-A", "bench.naive", "worker", "-c", "2", "-Q", "naive", "-l", "WARNING",
                    "-n", f"naive-{runtime}@%h"], NAIVE_BROKER=url, NAIVE_RUNTIME=runtime)
        from celery import Celery

        client = Celery(broker=url, backend=url)
        paths = [str(p) for p in self.photos]

        def run():
            results = [client.send_task("naive.classify", args=[p], queue="naive") for p in paths]
            return [r.get(timeout=600) for r in results]

        client.send_task("naive.classify", args=[paths[0]], queue="naive").get(timeout=300)  # models loaded
        return run

    # -- visionfleet --------------------------------------------------------
    def relabel(self, env: dict, *extra: str) -> Callable[[], object]:
        def run():
            subprocess.run([sys.executable, "-m", "visionfleet.cli", "relabel", str(self.work / "photos"), "--output",
                            str(self.work / "out"), "--wait", *extra], env={**self.env, **env}, cwd=REPO,
                           check=True, capture_output=True)
        return run

    def first_label_s(self) -> float:
        """Seconds from an embedded ``relabel`` command to its first part on disk."""
        out = self.work / "first"
        start = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "visionfleet.cli", "relabel", str(self.work / "photos"),
                                 "--output", str(out)], env=self.env, cwd=REPO, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        while not any(out.glob("*/part-*.jsonl")) and proc.poll() is None:
            time.sleep(0.01)
        first = time.perf_counter() - start
        proc.wait()
        return first


def reference(photos: list[Path]) -> dict[str, Callable[[], object]]:
    """Decode + eager torch batch 32 in one process, decode alone, and the runtime alone at fp32 and at
    int8 (calibrated on these photos, gate lowered to 0.9 as for the fleet), each on every core."""
    from concurrent.futures import ThreadPoolExecutor

    import torch

    from visionfleet.pipeline.calibration import calibration_set
    from visionfleet.pipeline.decode import Geometry
    from visionfleet.pipeline.engines import RuntimeSettings
    from visionfleet.pipeline.gpu_decode import pick_decoder
    from visionfleet.pipeline.preprocess import decoder_from_env
    from visionfleet.pipeline.model_loader import load_model

    torch.set_num_threads(CORES)
    eager = load_model("efficientnet_lite0", RuntimeSettings(runtime="torch", precision="fp32", threads=CORES))
    cache = os.environ.get("VISIONFLEET_MODEL_CACHE", str(Path(tempfile.gettempdir()) / "vf-bench-models"))
    compiled = load_model("efficientnet_lite0", RuntimeSettings(threads=CORES, model_cache=cache))
    int8 = load_model("efficientnet_lite0", RuntimeSettings(
        threads=CORES, model_cache=cache, precision="int8", int8_min_agreement=0.9), lambda geometry: calibration_set(
        map(str, photos), geometry, size=64, where="bench photos", max_pixels=10**8, max_bytes=10**8))
    blobs = [p.read_bytes() for p in photos]
    pool = ThreadPoolExecutor(CORES)
    decode_image = pick_decoder(decoder_from_env(), "cpu")  # the fleet's decode
    crops = np.stack(list(pool.map(lambda b: decode_image(b, Geometry()), blobs)))

    def decode_then_eager():
        decoded = np.stack([decode_image(b, Geometry()) for b in blobs])
        for i in range(0, len(decoded), 32):
            eager.predict(decoded[i:i + 32])

    def decode_alone():
        list(pool.map(lambda b: decode_image(b, Geometry()), blobs))

    def runtime_alone(model):
        for i in range(0, len(crops), 32):
            model.predict(crops[i:i + 32])

    return {"one process: decode, then eager torch batch 32": decode_then_eager,
            "stage: decode alone": decode_alone,
            "stage: runtime alone, fp32": lambda: runtime_alone(compiled),
            "stage: runtime alone, int8": lambda: runtime_alone(int8)}


def ray_data(photos: list[Path]) -> Callable[[], object] | None:
    try:
        import ray  # noqa: F401  (an optional extra)
    except ImportError:
        return None
    import ray

    from bench.naive import _crop

    ray.init(num_cpus=CORES, include_dashboard=False, log_to_driver=False)

    class Label:
        def __init__(self):
            import torch

            from visionfleet.pipeline.engines import RuntimeSettings
            from visionfleet.pipeline.model_loader import load_model

            torch.set_num_threads(1)
            self.model = load_model("efficientnet_lite0", RuntimeSettings(runtime="torch", precision="fp32", threads=1))

        def __call__(self, batch):
            crops = np.stack([_crop(p) for p in batch["path"]])
            return {"top1": self.model.predict(crops).argmax(axis=1)}

    paths = [{"path": str(p)} for p in photos]
    return lambda: ray.data.from_items(paths).map_batches(Label, batch_size=32, concurrency=2).take_all()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379", help="a Redis for the brokers (DBs 11-14)")
    args = parser.parse_args()
    import redis

    work = Path(tempfile.mkdtemp(prefix="vf-compare-"))
    (work / "photos").mkdir()
    photos = make_photos(work / "photos", args.images, size=(1280, 960))
    os.environ["VISIONFLEET_MODEL_CACHE"] = str(work / "models")
    for db in (11, 12, 13):
        redis.Redis.from_url(f"{args.redis}/{db}").flushdb()
    bench = Bench(work, photos, args.redis)
    fleet_env = {"VISIONFLEET_BROKER_URL": f"{args.redis}/11", "VISIONFLEET_LOCAL_ROOTS": str(work)}
    agreement = None
    try:
        systems = {
            "naive Celery, eager torch": bench.naive_worker("torch", 12),
            "naive Celery, ONNX Runtime": bench.naive_worker("onnxruntime", 13),
        }
        stages = reference(photos)
        systems["one process: decode, then eager torch batch 32"] = stages.pop(
            "one process: decode, then eager torch batch 32")
        if (ray := ray_data(photos)) is not None:
            systems["Ray Data map_batches, 2 actors, batch 32"] = ray
        # The default gate (0.98) refuses int8 on these photos (measured 0.95): lowered here, and reported.
        bench.start(["visionfleet.cli", "worker", "-Q", "bulk", "-c", "1", "-l", "WARNING"], **fleet_env,
                    VISIONFLEET_INT8_MIN_AGREEMENT="0.9")
        systems["visionfleet fleet, fp32"] = bench.relabel(fleet_env)
        systems["visionfleet fleet, int8"] = bench.relabel(fleet_env, "--precision", "int8")
        cold = timed(bench.relabel({}), args.images)  # the first embedded run builds the model cache
        systems["visionfleet embedded (start-up included)"] = bench.relabel({})
        systems.update(stages)
        for run in systems.values():
            run()  # warm-up: models loaded, caches built
        rates = {name: [] for name in systems}
        for _ in range(args.rounds):
            for name, run in systems.items():
                rates[name].append(timed(run, args.images))
        first = bench.first_label_s()
        agreement = next(json.loads(p.read_text()).get("int8_agreement") for p in (work / "out").glob("*/_SUCCESS.json")
                         if json.loads(p.read_text())["precision"] == "int8")
    finally:
        bench.stop_all()
        shutil.rmtree(work)
        for db in (11, 12, 13):
            redis.Redis.from_url(f"{args.redis}/{db}").flushdb()
    report(args, {name: statistics.median(r) for name, r in rates.items()}, rates, cold, first)
    print(f"int8 top-1 agreement with fp32 on held-out photos: {agreement} (gate lowered to 0.9 for this run)")


def report(args, median: dict, rates: dict, cold: float, first: float) -> None:
    naive = median["naive Celery, eager torch"]
    print(f"{args.images} JPEGs 1280x960, {CORES} cores, medians of {args.rounds} interleaved rounds")
    print(f"{'system':52s} {'images/s':>9s} {'vs naive':>9s}   runs")
    for name, value in median.items():
        print(f"{name:52s} {value:9.1f} {value / naive:8.2f}x   {[round(r, 1) for r in rates[name]]}")
    decode = median["stage: decode alone"]
    for precision in ("fp32", "int8"):
        limit = 1 / (1 / decode + 1 / median[f"stage: runtime alone, {precision}"])  # the stages share the cores
        rate = median[f"visionfleet fleet, {precision}"]
        print(f"stage limit at {precision} (decode and runtime sharing {CORES} cores): {limit:.1f} images/s "
              f"= {limit / naive:.2f}x naive; fleet {precision} reaches {rate / limit:.2f} of it")
    fleet = median["visionfleet fleet, fp32"]
    print(f"fleet fp32 vs naive Celery on ONNX Runtime: {fleet / median['naive Celery, ONNX Runtime']:.2f}x")
    print(f"embedded, cold model cache (export + start-up): {cold:.1f} images/s; "
          f"command to first labelled image (warm): {first:.1f} s")


if __name__ == "__main__":
    main()

"""The control plane at 50M images, measured (by hand, not in CI):

    python -m bench.control_plane [--images 50000000] [--window-s 60] [--finish-images 200000]

1. Plan ``--images`` URIs from a generated gzip'd manifest (streamed: never held in memory)
   with the default shard size, through the real ``visionfleet relabel`` against a Redis of
   its own: planning rate, the planner's peak RSS, broker messages, Redis memory.
2. ``status`` latency with every shard of that job queued.
3. The coordination ceiling: two real bulk workers (one core each) on that job, with a null
   model on 8x8 inputs that all name one small local file (so reads cost a page-cache hit):
   images/s over ``--window-s``, and Redis memory at peak.
4. A job of ``--finish-images`` run to the end: Redis memory left after it finished and the
   size of its ``_SUCCESS.json``, both per million images.
Everything runs on loopback; workers never poll the cloud metadata address.
"""
import argparse
import gzip
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from PIL import Image  # noqa: E402

from tests.helpers import RedisServer, wait_until  # noqa: E402
from visionfleet.checkpoints import open_store  # noqa: E402
from visionfleet.cli.progress import look  # noqa: E402

MODEL = "bench.null_model:build"


def manifest(work: Path, images: int) -> Path:
    """``images`` lines naming one 8x8 PNG, gzip'd, written in blocks."""
    (work / "img").mkdir()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(work / "img" / "px.png")
    path = work / "list.txt.gz"
    block = b"img/px.png\n" * 100_000
    with gzip.open(path, "wb", compresslevel=1) as out:
        for _ in range(images // 100_000):
            out.write(block)
        out.write(b"img/px.png\n" * (images % 100_000))
    return path


class ControlPlane:
    def __init__(self, work: Path) -> None:
        self.work = work
        self.redis = RedisServer(work)
        self.env = {**os.environ, "PYTHONPATH": str(REPO), "VISIONFLEET_SPOT_NOTICE_URL": "off",
                    "VISIONFLEET_METRICS_PORT": "off",
                    "VISIONFLEET_BROKER_URL": self.redis.url, "VISIONFLEET_HOME": str(work / "home"),
                    "VISIONFLEET_MODELS": MODEL, "VISIONFLEET_LOCAL_ROOTS": str(work),
                    "VISIONFLEET_MAX_BATCH_SIZE": "64", "VISIONFLEET_THREADS": "1"}
        self.store = open_store(self.redis.url)
        import redis

        self.r = redis.Redis.from_url(self.redis.url)
        self.workers: list[subprocess.Popen] = []

    def memory_mb(self) -> float:
        return self.r.info("memory")["used_memory"] / 2**20

    def relabel(self, source: Path, out: str, *extra: str) -> tuple[str, float]:
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "visionfleet.cli", "relabel", str(source), "-o",
                               str(self.work / out), "--model", MODEL, *extra], env=self.env, cwd=REPO,
                              capture_output=True, text=True, check=True)
        return done.stdout.split()[-1], time.perf_counter() - start

    def start_workers(self, count: int = 2) -> None:
        for i in range(count):
            log = open(self.work / f"worker-{len(self.workers)}.log", "wb")
            self.workers.append(subprocess.Popen(
                [sys.executable, "-m", "visionfleet.cli", "worker", "-Q", "bulk", "-c", "1", "-l", "WARNING",
                 "-n", f"cp{len(self.workers)}@%h"], env=self.env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT))

    def stop_workers(self) -> None:
        for proc in self.workers:
            proc.terminate()
        for proc in self.workers:
            proc.wait()
        self.workers = []

    def status_ms(self, job_id: str, tries: int = 21) -> float:
        times = []
        for _ in range(tries):
            start = time.perf_counter()
            look(self.store, job_id)
            times.append((time.perf_counter() - start) * 1000)
        return statistics.median(times)


def run(args) -> dict:
    with tempfile.TemporaryDirectory(prefix="vf-control-plane-") as tmp:
        work = Path(tmp)
        cp = ControlPlane(work)
        report: dict = {"images": args.images}
        try:
            start = time.perf_counter()
            source = manifest(work, args.images)
            report["manifest_s"] = round(time.perf_counter() - start, 1)
            before = cp.memory_mb()
            job_id, plan_s = cp.relabel(source, "out")
            report.update(plan_s=round(plan_s, 1), plan_uris_per_s=round(args.images / plan_s),
                          planner_peak_rss_mb=round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024),
                          broker_messages=cp.r.llen("bulk"),
                          redis_mb_after_plan=round(cp.memory_mb() - before, 1),
                          status_ms_at_all_shards_queued=round(cp.status_ms(job_id), 2))
            peak = cp.memory_mb()
            cp.start_workers()
            wait_until(lambda: cp.store.progress(job_id).done > 0, 120, "the workers to start")
            first, t0 = cp.store.progress(job_id).done, time.perf_counter()
            while time.perf_counter() - t0 < args.window_s:
                time.sleep(1)  # sampling memory while the workers run
                peak = max(peak, cp.memory_mb())
            report["ceiling_images_per_s"] = round((cp.store.progress(job_id).done - first)
                                                   / (time.perf_counter() - t0))
            report["status_ms_while_running"] = round(cp.status_ms(job_id), 2)
            report["redis_mb_peak"] = round(peak - before, 1)
            cp.store.set_state(job_id, "cancelled", "benchmark window over")
            cp.stop_workers()
            cp.store.purge(job_id)
            cp.r.delete("bulk")

            small = manifest_small(work, args.finish_images)
            before = cp.memory_mb()
            cp.start_workers()
            job_id, finish_s = cp.relabel(small, "out-small", "--wait")
            cp.stop_workers()
            summary = next((work / "out-small").glob("*/_SUCCESS.json"))
            per_million = 1e6 / args.finish_images
            report.update(finish_images=args.finish_images, finish_s=round(finish_s, 1),
                          finish_images_per_s=round(args.finish_images / finish_s),
                          redis_mb_per_million_after_finish=round((cp.memory_mb() - before) * per_million, 2),
                          success_json_mb_per_million=round(summary.stat().st_size / 2**20 * per_million, 2))
        finally:
            cp.stop_workers()
            cp.redis.stop()
    return report


def manifest_small(work: Path, images: int) -> Path:
    path = work / "small.txt.gz"
    with gzip.open(path, "wb", compresslevel=1) as out:
        out.write(b"img/px.png\n" * images)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=50_000_000)
    parser.add_argument("--window-s", type=float, default=60)
    parser.add_argument("--finish-images", type=int, default=200_000)
    report = run(parser.parse_args())
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()

"""Decode memory of real workers (by hand, not in CI): the decode budget's two claims.

    python -m bench.decode_memory online [--requests 64] [--broker URL]
    python -m bench.decode_memory bulk [--images 5000] [--broker URL]

``online``: one online worker (default pool: 64 task threads) gets ``--requests``
requests at once, each for its own 9000 x 9000 progressive JPEG (1.8 MB, 4:4:4:
~480 MB of coefficients while it decodes); prints its RSS before and its peak
(VmHWM, the process and its children), how many came back ok and how long all
took. The target is a peak under 3 GB at 64. Never run it with the budget set
out of the way (``VISIONFLEET_DECODE_BUDGET_PIXELS`` above ~20 images'
pixels): 64 such decodes at once need ~30 GB.

``bulk``: one bulk worker labels a folder of ``--images`` files (photos from
0.3 to 12 MP, baseline and progressive JPEG and PNG, and one 9000 x 9000
progressive JPEG in every 500), sampled every half second; prints the worker's
RSS at each tenth of the job and the growth over its second half, per 1,000
images. Flat means that growth stays near zero.

Settings come from the environment as for any worker. The broker is a
redis-server of its own on a free port, stopped at the end; a ``--broker``
given instead has its database emptied first. Files live in a temporary folder (hard links: the bulk job
takes little disk), removed at the end.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.proc_memory import tree_bytes  # noqa: E402
from bench.samples import bundled, giant_progressive_jpeg  # noqa: E402
from tests.helpers import RedisServer  # noqa: E402

GIB, MIB = 1024**3, 1024**2


def start_worker(env: dict, queue: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "visionfleet.cli", "worker", "-Q", queue, "-c", "1", "-l", "WARNING"],
                            env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    proc.wait(timeout=60)


def online(env: dict, work: Path, requests: int) -> None:
    from visionfleet.broker.client import ClientSettings, VisionClient

    giant = work / "giant.jpg"
    giant.write_bytes(giant_progressive_jpeg(9000))
    uris = []
    for i in range(requests):  # a file each: one request, one decode
        os.link(giant, work / f"giant-{i:03d}.jpg")
        uris.append(str(work / f"giant-{i:03d}.jpg"))
    warm = work / "warm.png"
    shutil.copyfile(bundled("coffee.png"), warm)
    client = VisionClient(settings=ClientSettings(max_backlog=100_000))
    worker = start_worker(env, "online")
    try:
        client.classify(str(warm), timeout=300)  # model loaded, worker warm
        before = tree_bytes(worker.pid, "VmRSS")
        started = time.perf_counter()
        records = client.classify_many(uris, timeout=3600)
        seconds = time.perf_counter() - started
        peak = tree_bytes(worker.pid, "VmHWM")
    finally:
        stop(worker)
    ok = sum(r["status"] == "ok" for r in records)
    print(f"{requests} concurrent 9000x9000 progressive JPEGs ({giant.stat().st_size / 1e6:.1f} MB each): "
          f"{ok} ok, {len(records) - ok} errors, {seconds:.1f} s for all")
    print(f"online worker RSS: {before / GIB:.2f} GiB before, peak {peak / GIB:.2f} GiB")


def bulk_inputs(folder: Path, count: int) -> None:
    """``count`` files, hard links to a few dozen distinct photos of many sizes and formats."""
    import numpy as np
    from PIL import Image

    bases = folder / "bases"
    bases.mkdir()
    source = Image.open(bundled("astronaut.png")).convert("RGB")
    kinds = []
    for i, megapixels in enumerate((0.3, 0.5, 1, 2, 3, 5, 8, 12) * 3):
        side = int((megapixels * 1e6 / 1.5) ** 0.5)
        picture = source.resize((int(side * 1.5), side), Image.BILINEAR)
        picture = Image.fromarray(np.asarray(picture) ^ np.uint8(i))  # distinct bytes, same statistics
        fmt, options = [("JPEG", {"quality": 90}), ("JPEG", {"progressive": True}), ("PNG", {})][i % 3]
        path = bases / f"{i:02d}.{fmt.lower()}"
        picture.save(path, fmt, **options)
        kinds.append(path)
    giant = bases / "giant.jpg"
    giant.write_bytes(giant_progressive_jpeg(9000))
    for i in range(count):
        base = giant if i % 500 == 250 else kinds[i % len(kinds)]
        os.link(base, folder / "images" / f"{i:06d}{base.suffix}")


def bulk(env: dict, work: Path, images: int) -> None:
    from visionfleet.checkpoints import open_store

    (work / "images").mkdir()
    bulk_inputs(work, images)
    worker = start_worker(env, "bulk")
    samples: list[tuple[int, int]] = []  # (images done, worker RSS)
    try:
        job = subprocess.run([sys.executable, "-m", "visionfleet.cli", "relabel", str(work / "images"), "--output",
                              str(work / "out")], env=env, cwd=REPO, capture_output=True, text=True,
                             check=True).stdout.split()[-1]
        store = open_store(env["VISIONFLEET_BROKER_URL"])
        while (progress := store.progress(job)).state not in ("succeeded", "failed", "cancelled"):
            samples.append((progress.done, tree_bytes(worker.pid, "VmRSS")))
            time.sleep(0.5)
        peak = tree_bytes(worker.pid, "VmHWM")
    finally:
        stop(worker)
    seconds = progress.updated_at - progress.started_at
    print(f"bulk job of {images} images: {progress.state}, {progress.ok} ok, {progress.errors} errors, "
          f"{seconds:.0f} s ({images / seconds:.0f} images/s)")
    print("images done -> worker RSS (MiB):", ", ".join(
        f"{done}: {rss / MIB:.0f}" for done, rss in _at_tenths(samples, images)))
    half = [(d, r) for d, r in samples if d >= images // 2]
    if len(half) > 1:
        growth = (half[-1][1] - half[0][1]) / MIB / max(1, half[-1][0] - half[0][0]) * 1000
        print(f"second half: {growth:+.1f} MiB per 1,000 images; peak {peak / MIB:.0f} MiB")


def _at_tenths(samples: list[tuple[int, int]], images: int) -> list[tuple[int, int]]:
    out = []
    for tenth in range(1, 11):
        due = [s for s in samples if s[0] >= images * tenth // 10]
        if due and due[0] not in out:
            out.append(due[0])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=("online", "bulk"))
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--broker", help="a Redis URL whose database is emptied first (default: a redis-server "
                                         "of its own)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="vf-decode-memory-"))
    own = None if args.broker else RedisServer(work)
    try:
        run(args, work, args.broker or own.url)
    finally:
        if own is not None:
            own.stop()
        shutil.rmtree(work, ignore_errors=True)


def run(args, work: Path, broker: str) -> None:
    import redis

    redis.Redis.from_url(broker).flushdb()
    env = {**os.environ, "VISIONFLEET_BROKER_URL": broker, "VISIONFLEET_HOME": str(work / "home"),
           "VISIONFLEET_ONLINE_CACHE": "off", "PYTHONPATH": str(REPO), "VISIONFLEET_LOCAL_ROOTS": str(work),
           "VISIONFLEET_SPOT_NOTICE_URL": os.environ.get("VISIONFLEET_SPOT_NOTICE_URL", "off"),
           "VISIONFLEET_METRICS_PORT": os.environ.get("VISIONFLEET_METRICS_PORT", "off")}
    os.environ.update({k: v for k, v in env.items() if k.startswith("VISIONFLEET_")})
    from visionfleet.workers.allocator import choice, tcmalloc

    allocator = tcmalloc() if choice() == "auto" and tcmalloc() else "system malloc"
    print(f"machine: {os.cpu_count()} cores, workers on {allocator}, "
          f"VISIONFLEET_DECODE_BUDGET_PIXELS={os.environ.get('VISIONFLEET_DECODE_BUDGET_PIXELS', 'default')}")
    (online if args.what == "online" else bulk)(env, work, args.requests if args.what == "online" else args.images)


if __name__ == "__main__":
    main()

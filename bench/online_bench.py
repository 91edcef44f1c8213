"""Online latency under open-loop load (by hand, not in CI).

    python -m bench.online_bench [--rates 10,30,60] [--seconds 8] [--broker redis://127.0.0.1:6379/14]

Sends ``visionfleet.classify`` requests at fixed rates (open loop: a send
never waits for an earlier answer) to one online worker and reports p50,
p99 and achieved throughput, with dynamic batching on and off (max batch 1),
then p99 at a low rate while a bulk job runs on the same machine. The
dedup cache is off, so every request runs the model. Same machine, same
run, same images: compare the rows, not absolute numbers across machines.
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.e2e_bench import make_photos  # noqa: E402


def start_worker(env: dict, queues: str, **extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "visionfleet.cli", "worker", "-Q", queues, "-l", "WARNING"],
                            env={**env, **extra}, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    proc.wait(timeout=60)


def open_loop(client, results: "redis.Redis", uris: list[str], rate: float, seconds: float) -> dict:
    """Send at ``rate``/s for ``seconds``; latency runs from each scheduled send time to the
    moment its result appears in the result backend (polled in bulk every 2 ms by one
    thread, so the load generator stays light on a machine it shares with the worker)."""
    count = int(rate * seconds)
    sent: dict[str, float] = {}
    latencies: list[float] = []
    lock = threading.Lock()
    done_sending = threading.Event()

    def collect() -> None:
        while not (done_sending.is_set() and not sent):
            with lock:
                ids = list(sent)
            if ids:
                now = time.perf_counter()
                for task_id, value in zip(ids, results.mget([f"celery-task-meta-{i}" for i in ids])):
                    if value is not None:
                        with lock:
                            latencies.append(now - sent.pop(task_id))
            time.sleep(0.002)

    collector = threading.Thread(target=collect)
    collector.start()
    start = time.perf_counter() + 0.2
    for i in range(count):
        due = start + i / rate
        time.sleep(max(0.0, due - time.perf_counter()))
        task_id = client.submit(uris[i % len(uris)]).id
        with lock:
            sent[task_id] = due
    done_sending.set()
    collector.join(timeout=300)
    elapsed = time.perf_counter() - start
    latencies.sort()
    return {"rate": rate, "sent": count, "throughput": round(len(latencies) / elapsed, 1),
            "p50_ms": round(1000 * statistics.median(latencies), 1),
            "p99_ms": round(1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))], 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", default="10,30,60")
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--broker", default="redis://127.0.0.1:6379/14")
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",")]

    import redis

    work = Path(tempfile.mkdtemp(prefix="vf-online-"))
    (work / "photos").mkdir()
    uris = [str(p) for p in make_photos(work / "photos", 64, size=(640, 480))]
    (work / "bulk").mkdir()
    make_photos(work / "bulk", 1500, size=(640, 480))
    redis.Redis.from_url(args.broker).flushdb()
    env = {**os.environ, "VISIONFLEET_BROKER_URL": args.broker, "VISIONFLEET_HOME": str(work / "home"),
           "VISIONFLEET_ONLINE_CACHE": "off", "PYTHONPATH": str(REPO), "VISIONFLEET_LOCAL_ROOTS": str(work),
           "VISIONFLEET_SPOT_NOTICE_URL": os.environ.get("VISIONFLEET_SPOT_NOTICE_URL", "off"),
           "VISIONFLEET_METRICS_PORT": os.environ.get("VISIONFLEET_METRICS_PORT", "off")}
    os.environ.update({k: v for k, v in env.items() if k.startswith("VISIONFLEET_")})
    from visionfleet.broker.client import ClientSettings, VisionClient

    client = VisionClient(settings=ClientSettings(max_backlog=100_000))
    results = redis.Redis.from_url(args.broker)
    rows = []
    for mode, extra in (("batching on", {}), ("batching off", {"VISIONFLEET_MAX_BATCH_SIZE": "1"})):
        worker = start_worker(env, "online", **extra)
        try:
            client.classify(uris[0], timeout=120)  # model loaded, worker warm
            for rate in rates:
                rows.append({"mode": mode, **open_loop(client, results, uris, rate, args.seconds)})
        finally:
            stop(worker)

    worker = start_worker(env, "online")
    bulk = start_worker(env, "bulk")
    try:
        client.classify(uris[0], timeout=120)
        low = rates[0]
        rows.append({"mode": "idle (bulk worker up)", **open_loop(client, results, uris, low, args.seconds)})
        job = subprocess.run([sys.executable, "-m", "visionfleet.cli", "relabel", str(work / "bulk"), "--output",
                              str(work / "out"), "--shard-size", "50"], env=env, cwd=REPO, capture_output=True,
                             text=True, check=True).stdout.split()[-1]
        from visionfleet.checkpoints import open_store

        store = open_store(args.broker)
        while store.progress(job).done < 50:  # measure under load, not during the bulk worker's start
            time.sleep(0.1)
        rows.append({"mode": "during a bulk job", **open_loop(client, results, uris, low, args.seconds)})
        progress = store.progress(job)
        if progress.state != "running":
            print(f"warning: the bulk job ended during the measurement ({progress.done} done)")
    finally:
        stop(bulk)
        stop(worker)

    print(f"{'mode':24} {'rate/s':>7} {'thru/s':>7} {'p50 ms':>8} {'p99 ms':>8}")
    for r in rows:
        print(f"{r['mode']:24} {r['rate']:7.0f} {r['throughput']:7.1f} {r['p50_ms']:8.1f} {r['p99_ms']:8.1f}")


if __name__ == "__main__":
    main()

"""Is the pipeline keeping a fast accelerator fed? Measured without a GPU (by hand, not in CI).

    python -m bench.fed [--photos 1000] [--rounds 2] [--large]   (--large: 10,000 photos too)

On the same JPEGs (1280x960, cut from real photos, each different), rounds alternating A B C:
A. decode capacity: the project's decode (the worker's, VISIONFLEET_DECODE: ``fast`` unless set;
   built-in geometry) on every core, in as many threads as the worker decodes in
   (VISIONFLEET_IO_THREADS, 8 unless set), through as many decode processes as it has
   (VISIONFLEET_DECODE_PROCESSES, none unless set);
B. the Pillow reference (issue 23): open, draft("RGB", (256, 256)), convert("RGB"), short side to 256
   bilinear, centre crop 224, numpy.asarray; the same way;
C. end to end: a real ``relabel`` of the photos, timed from the job's creation in the store (the
   planner then lists the folder and enqueues its shards) to its state ``succeeded``, through a standing ``visionfleet worker -Q bulk -c 1`` on a
   private Redis, with the stand-in device model (``bench.standin_model``) at 20,000 images/s.
fed = C / A, x Pillow = C / B; C is also given timed from the start of the ``relabel`` command (Python
and Celery start-up, planning: a cost per job, not per image). Where C's time goes, from the worker's own records of the run:
- start: created -> the job's ``started_at`` (the worker took the message and its lease);
- the model thread (it runs the model, the per-image records and the commits, one after another):
  infer = its seconds in the stand-in (stage metric ``infer``), commits = ``write`` + ``commit`` stage
  metrics, bookkeeping = its CPU seconds (/proc, the worker's main thread) less the commits, per image;
  waiting for a batch = the rest of its labelling time (it blocked on the decode threads);
- decode: the CPU seconds per image of the worker's decode threads (and decode processes), against
  those of A: above it, decode in the worker costs more than decode alone;
- shard fill and drain: per shard, the time from the previous shard's end (or the job's start) to its
  first commit, less what those images take at the shard's steady rate, plus the last commit to
  ``succeeded`` (from the worker's ``commit`` log lines).
Medians of the rounds. Everything runs on loopback; the Redis, the worker and all files go at the end.
"""
import argparse
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.e2e_bench import make_photos  # noqa: E402
from tests.helpers import RedisServer, free_port, wait_until  # noqa: E402

MODEL = "bench.standin_model:build"
CORES = os.cpu_count() or 1
THREADS = int(os.environ.get("VISIONFLEET_IO_THREADS", "8"))  # the worker's decode threads, as it reads them
PROCESSES = int(os.environ.get("VISIONFLEET_DECODE_PROCESSES", "0"))  # and its decode processes
TICK = os.sysconf("SC_CLK_TCK")


def pillow_reference(data: bytes) -> np.ndarray:
    """The issue's pinned plain-Pillow decode."""
    img = Image.open(io.BytesIO(data))
    img.draft("RGB", (256, 256))
    img = img.convert("RGB")
    w, h = img.size
    scale = 256 / min(w, h)
    img = img.resize((max(256, round(w * scale)), max(256, round(h * scale))), Image.Resampling.BILINEAR)
    w, h = img.size
    left, top = (w - 224) // 2, (h - 224) // 2
    return np.asarray(img.crop((left, top, left + 224, top + 224)))


def project_decode(data: bytes) -> np.ndarray:
    from visionfleet.pipeline.decode import Geometry
    from visionfleet.pipeline.gpu_decode import pick_decoder
    from visionfleet.pipeline.preprocess import decoder_from_env

    return pick_decoder(decoder_from_env(), "cpu")(data, Geometry())


def project_capacity(blobs: list[bytes]) -> tuple[float, float]:
    """A: ``capacity`` of the project's decode, through decode processes where the worker has them (their
    CPU seconds counted with this process's)."""
    if not PROCESSES:
        return capacity(project_decode, blobs)
    from visionfleet.pipeline.decode import Geometry
    from visionfleet.pipeline.decode_processes import DecodeProcesses
    from visionfleet.pipeline.preprocess import decoder_from_env

    pool = DecodeProcesses(decoder_from_env(), PROCESSES)
    try:
        before = sum(map(process_cpu, pool.pids()))
        rate, own = capacity(lambda data: pool(data, Geometry()), blobs)
        return rate, own + (sum(map(process_cpu, pool.pids())) - before) / len(blobs)
    finally:
        pool.close()


def capacity(decode, blobs: list[bytes]) -> tuple[float, float]:
    """Images/s of ``decode`` on every core, in as many threads as the worker decodes in (so that, on
    cores shared with other work, both get the same share of them), and its CPU seconds per image."""
    with ThreadPoolExecutor(THREADS) as pool:
        start, cpu = time.perf_counter(), time.process_time()
        for _ in pool.map(decode, blobs):
            pass
        return len(blobs) / (time.perf_counter() - start), (time.process_time() - cpu) / len(blobs)


def metrics(port: int) -> dict[str, float]:
    """The worker's stage sums and counts, from its /metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name in ("visionfleet_stage_seconds_sum", "visionfleet_stage_seconds_count"):
                out[f"{s.labels['stage']}_{s.name.rsplit('_', 1)[1]}"] = s.value
    return out


def process_cpu(pid: int, task: str = "") -> float:
    """CPU seconds of process ``pid`` (or of its thread ``task``)."""
    fields = Path(f"/proc/{pid}{task and '/task/' + task}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def thread_cpu(pid: int) -> tuple[float, float]:
    """CPU seconds of ``pid``'s main thread, and of all its other threads and its child processes (its
    decode processes, if any)."""
    main = other = 0.0
    for task in Path(f"/proc/{pid}/task").iterdir():
        seconds = process_cpu(pid, task.name)
        if int(task.name) == pid:
            main = seconds
        else:
            other += seconds
        other += sum(process_cpu(int(c)) for c in (task / "children").read_text().split())
    return main, other


class Fleet:
    """A private Redis and one standing bulk worker with the stand-in model, logging its commits."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.redis = RedisServer(work)
        self.port = free_port()
        self.env = {**os.environ, "PYTHONPATH": str(REPO), "VISIONFLEET_SPOT_NOTICE_URL": "off",
                    "VISIONFLEET_METRICS_PORT": str(self.port), "VISIONFLEET_METRICS_ADDR": "127.0.0.1",
                    "VISIONFLEET_BROKER_URL": self.redis.url, "VISIONFLEET_HOME": str(work / "home"),
                    "VISIONFLEET_MODEL": MODEL, "VISIONFLEET_MODELS": MODEL, "VISIONFLEET_LOCAL_ROOTS": str(work),
                    "VISIONFLEET_STANDIN_RATE": "20000"}
        from visionfleet.checkpoints import open_store

        self.store = open_store(self.redis.url)
        self.log = work / "worker.log"
        self.worker = subprocess.Popen(
            [sys.executable, "-m", "visionfleet.cli", "worker", "-Q", "bulk", "-c", "1", "-l", "INFO"],
            env=self.env, cwd=REPO, stdout=open(self.log, "wb"), stderr=subprocess.STDOUT)
        self.jobs = 0

    def child(self) -> int:
        """The worker process that labels (the prefork pool's child): the one with the most threads
        under the command (the decode threads)."""
        tree, todo = [], [self.worker.pid]
        while todo:
            pid = todo.pop()
            tree.append(pid)
            todo += [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
        return max(tree, key=lambda p: len(list(Path(f"/proc/{p}/task").iterdir())))

    def stop(self) -> None:
        self.worker.terminate()
        try:
            self.worker.wait(60)
        except subprocess.TimeoutExpired:
            self.worker.kill()
            self.worker.wait()
        self.redis.stop()

    def relabel(self, photos: Path) -> dict:
        """One job of ``photos``: its times and the worker's records of it."""
        self.jobs += 1
        out = self.work / f"out-{self.jobs}"
        child = self.child()
        before, (main0, other0) = metrics(self.port), thread_cpu(child)
        command = time.time()
        done = subprocess.run([sys.executable, "-m", "visionfleet.cli", "relabel", str(photos), "-o", str(out),
                               "--model", MODEL], env=self.env, cwd=REPO, capture_output=True, text=True, check=True)
        job_id = done.stdout.split()[-1]
        p = wait_until(lambda: (q := self.store.progress(job_id)).state in ("succeeded", "failed") and q, 3600,
                       "the job to end", every=0.02)
        assert p.state == "succeeded" and p.errors == 0, p
        after, (main1, other1) = metrics(self.port), thread_cpu(child)
        diff = {k: after.get(k, 0) - before.get(k, 0) for k in after}
        # The report is the worker's last write for the job: the next measurement starts after it.
        wait_until(lambda: (out / job_id / "_REPORT.json").exists(), 60, "the job's report")
        shutil.rmtree(out)
        return {"images": p.done, "command": command, "enqueued": p.created_at, "started": p.started_at, "ended": p.updated_at,
                "metrics": diff, "main_cpu": main1 - main0, "other_cpu": other1 - other0,
                "commits": self._commits(job_id)}

    def _commits(self, job_id: str) -> list[dict]:
        lines = (json.loads(line) for line in self.log.read_text().splitlines() if line.startswith("{"))
        return [e for e in lines if e.get("event") == "commit" and e.get("job_id") == job_id]


def breakdown(run: dict, decode_rate: float, decode_cpu: float) -> dict:
    """Where the end-to-end time of one run went (seconds, and per image where said)."""
    n, m = run["images"], run["metrics"]
    total = run["ended"] - run["enqueued"]
    labelling = run["ended"] - run["started"]
    commits = m.get("write_sum", 0) + m.get("commit_sum", 0)
    bookkeeping = max(0.0, run["main_cpu"] - commits)
    return {
        "images_per_s": n / total,
        "with_command_images_per_s": n / (run["ended"] - run["command"]),
        "total_s": total,
        "decode_bound_s": n / decode_rate,
        "start_s": run["started"] - run["enqueued"],
        "infer_s": m.get("infer_sum", 0),
        "commits_s": commits,
        "bookkeeping_s": bookkeeping,
        "bookkeeping_us_per_image": bookkeeping / n * 1e6,
        "waiting_for_batch_s": labelling - m.get("infer_sum", 0) - commits - bookkeeping,
        "decode_cpu_ms_per_image_worker": run["other_cpu"] / n * 1e3,
        "decode_cpu_ms_per_image_alone": decode_cpu * 1e3,
        "fill_drain_s": fill_and_drain(run),
        "mean_batch": n / m["infer_count"] if m.get("infer_count") else 0.0,
        "worker_cores_used": (run["main_cpu"] + run["other_cpu"]) / labelling,
        "decode_cores_used_alone": decode_cpu * decode_rate,
    }


def fill_and_drain(run: dict) -> float:
    """Per shard, the time to its first commit beyond what those images take at its steady rate, and
    the time from the last commit to ``succeeded``."""
    by_shard: dict[int, list[dict]] = {}
    for c in run["commits"]:
        by_shard.setdefault(c["shard"], []).append(c)
    lost, previous_end = 0.0, run["started"]
    for shard in sorted(by_shard, key=lambda s: by_shard[s][0]["ts"]):
        commits = by_shard[shard]
        first, last = commits[0], commits[-1]
        steady = (last["end"] - first["end"]) / (last["ts"] - first["ts"]) if len(commits) > 1 else 0
        images = first["end"] - first["start"]
        lost += max(0.0, first["ts"] - previous_end - (images / steady if steady else 0))
        previous_end = last["ts"]
    return lost + max(0.0, run["ended"] - previous_end)


def measure(work: Path, count: int, rounds: int, fleet: Fleet) -> dict:
    photos = work / f"photos-{count}"
    photos.mkdir()
    blobs = [p.read_bytes() for p in make_photos(photos, count, size=(1280, 960))]
    fleet.relabel(photos)  # warm-up: page cache, the worker's first job
    a, cpu, b, c = [], [], [], []
    for _ in range(rounds):
        rate, per_image = project_capacity(blobs)
        a.append(rate)
        cpu.append(per_image)
        b.append(capacity(pillow_reference, blobs)[0])
        c.append(fleet.relabel(photos))
    decode, pillow = statistics.median(a), statistics.median(b)
    parts = [breakdown(run, decode, statistics.median(cpu)) for run in c]
    median = {k: statistics.median(p[k] for p in parts) for k in parts[0]}
    e2e = median["images_per_s"]
    return {"photos": count, "rounds": rounds, "decode_capacity": decode, "pillow_capacity": pillow,
            "end_to_end": e2e, "fed": e2e / decode, "x_pillow": e2e / pillow,
            "runs": {"decode": a, "pillow": b, "end_to_end": [p["images_per_s"] for p in parts]},
            "breakdown": median}


def report(r: dict) -> None:
    b = r["breakdown"]
    print(f"{r['photos']} JPEGs 1280x960, {CORES} cores, stand-in at 20000 images/s, {THREADS} decode threads, "
          f"{PROCESSES} decode processes, medians of {r['rounds']} rounds, "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"decode capacity (project): {r['decode_capacity']:8.1f} images/s  runs {_r(r['runs']['decode'])}")
    print(f"Pillow reference capacity: {r['pillow_capacity']:8.1f} images/s  runs {_r(r['runs']['pillow'])}")
    print(f"end to end (worker):       {r['end_to_end']:8.1f} images/s  runs {_r(r['runs']['end_to_end'])}")
    print(f"fed = {r['fed']:.2f}   x Pillow = {r['x_pillow']:.2f}")
    print(f"(timed from the start of the relabel command instead, its own start-up included: "
          f"{b['with_command_images_per_s']:.1f} images/s, fed {b['with_command_images_per_s'] / r['decode_capacity']:.2f})")
    print(f"where the time goes ({b['total_s']:.2f} s end to end; {b['decode_bound_s']:.2f} s if decode-bound):")
    print(f"  start (created -> lease):          {b['start_s']:6.2f} s")
    print(f"  model thread, in the model:       {b['infer_s']:6.2f} s  (mean batch {b['mean_batch']:.1f})")
    print(f"  model thread, commits:            {b['commits_s']:6.2f} s")
    print(f"  model thread, bookkeeping:        {b['bookkeeping_s']:6.2f} s  "
          f"({b['bookkeeping_us_per_image']:.0f} us CPU per image)")
    print(f"  model thread, waiting for batch:  {b['waiting_for_batch_s']:6.2f} s")
    print(f"  shard fill and drain:             {b['fill_drain_s']:6.2f} s")
    print(f"  decode CPU per image: {b['decode_cpu_ms_per_image_worker']:.2f} ms in the worker's threads"
          f"{' and decode processes' if PROCESSES else ''}, "
          f"{b['decode_cpu_ms_per_image_alone']:.2f} ms alone (A)")
    print(f"  cores used of {CORES} (the rest went to other work): worker {b['worker_cores_used']:.2f}, "
          f"decode alone (A) {b['decode_cores_used_alone']:.2f}")


def _r(values: list[float]) -> list[float]:
    return [round(v, 1) for v in values]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--large", action="store_true", help="also 10,000 photos (takes a while)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON too")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="vf-fed-"))
    fleet = None
    try:
        fleet = Fleet(work)
        wait_until(lambda: _ready(fleet.port), 120, "the worker to be ready")
        results = [measure(work, n, args.rounds, fleet) for n in [args.photos] + ([10_000] * args.large)]
    finally:
        if fleet is not None:
            fleet.stop()
        shutil.rmtree(work, ignore_errors=True)
    for r in results:
        report(r)
        if args.json:
            print(json.dumps(r))


def _ready(port: int) -> bool:
    try:
        return urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2).status == 200
    except OSError:
        return False


if __name__ == "__main__":
    main()

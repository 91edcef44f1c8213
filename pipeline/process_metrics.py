"""The Prometheus metrics each worker process records into (``prometheus_client``).

A worker's processes (its prefork pool children, or the online and bulk
pair) each write their own values into ``PROMETHEUS_MULTIPROC_DIR``, which
the one ``/metrics`` endpoint of the worker sums up (``workers/exporter.py``).
That directory must be set before ``prometheus_client`` is first imported;
without it (a library user, a test) the values stay in this process.

No label carries a job id, a URI or a worker name: one series per queue,
status or stage, however many jobs run. Fleet-wide gauges (backlog, desired
workers) are read from Redis at scrape time by the exporter, not here.
"""
import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import Counter, Gauge, Histogram

STAGES = ("fetch", "decode", "infer", "write", "commit")
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
_STAGE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

IMAGES = Counter("visionfleet_images", "Images labelled (bulk: once committed)", ["queue", "status"])
BATCH_SIZE = Histogram("visionfleet_batch_size", "Images per model batch", buckets=_BATCH_BUCKETS)
STAGE_SECONDS = Histogram("visionfleet_stage_seconds", "Seconds per stage: fetch and decode per image, "
                          "infer per batch, write and commit per commit", ["stage"], buckets=_STAGE_BUCKETS)
ONLINE_REQUEST_SECONDS = Histogram("visionfleet_online_request_seconds",
                                   "Online request, enqueued to labelled", buckets=_REQUEST_BUCKETS)
SHARD_TAKEOVERS = Counter("visionfleet_shard_takeovers", "Shards taken over from a dead or stalled worker")
COMMITS = Counter("visionfleet_commits", "Bulk commits (output part written, checkpoint moved)")
CACHE_HITS = Counter("visionfleet_cache_hits", "Inputs whose labels came from the dedup cache")
CACHE_MISSES = Counter("visionfleet_cache_misses", "Inputs looked up in the dedup cache and not found")
FAULT_WAITS = Counter("visionfleet_fault_waits", "Pauses of a worker waiting out an infrastructure fault",
                      ["fault"])  # store, broker, storage or disk (pipeline.faults)
# Per process; the exporter shows the most any live process says.
WAITING_ON_FAULT = Gauge("visionfleet_waiting_on_fault", "1 while the worker waits out an infrastructure fault",
                         multiprocess_mode="livemax")
DRAINING = Gauge("visionfleet_worker_draining", "1 while the worker drains (SIGTERM, spot notice, drain)",
                 multiprocess_mode="livemax")
SPOT_NOTICE = Gauge("visionfleet_spot_notice", "1 once a spot termination notice was seen",
                    multiprocess_mode="livemax")
MODEL_LOAD_SECONDS = Gauge("visionfleet_model_load_seconds", "Seconds the last model load took (build or fetch "
                           "of its artifacts included)", multiprocess_mode="livemax")
# Summed over live processes, like the budgets themselves (one per process: pipeline/decode_budget.py).
DECODE_PIXELS = Gauge("visionfleet_decode_pixels", "Source pixels of the images being decoded now (decode budget "
                      "in use)", multiprocess_mode="livesum")
DECODE_BUDGET = Gauge("visionfleet_decode_budget_pixels", "Decode budget: source pixels the worker's processes may "
                      "decode at once", multiprocess_mode="livesum")
DECODE_WAITING = Gauge("visionfleet_decode_waiting", "Decodes waiting for the decode budget",
                       multiprocess_mode="livesum")
# Summed over live processes: how many have their model loaded and warmed (readiness).
PROCESSES_READY = Gauge("visionfleet_processes_ready", "Worker processes with their model loaded and warmed",
                        multiprocess_mode="livesum")


def show_decode_budget(in_use: int, waiting: int) -> None:
    """A decode budget's ``on_change``: its state into the gauges."""
    DECODE_PIXELS.set(in_use)
    DECODE_WAITING.set(waiting)


@contextmanager
def stage(name: str) -> Iterator[None]:
    """Time one stage into ``visionfleet_stage_seconds``."""
    start = time.perf_counter()
    try:
        yield
    finally:
        STAGE_SECONDS.labels(name).observe(time.perf_counter() - start)

"""``visionfleet worker``: which Celery worker processes to run, and how.

- ``bulk``: prefork pool, one shard per process at a time, the model in
  each pool child, all the cores' threads.
- ``online``: a threads pool (one model, shared), enough task threads to
  fill a model batch (prefetch never starves the batcher), one torch thread
  on CPU so it leaves the cores to bulk work.
- both (the default): one of each, as two processes under this one, so an
  online request never waits behind a running shard.
"""
import logging
import os
import sys

from celery.utils.nodenames import host_format

from visionfleet.broker.routes import queue_name
from visionfleet.cli.supervisor import WorkerProcesses
from visionfleet.pipeline.envvars import env_int
from visionfleet.pipeline.errors import ConfigError
from visionfleet.pipeline.engines import RuntimeSettings, has_cuda
from visionfleet.workers.exporter import SERVED_PORT_ENV, Exporter, ExporterSettings, share_metrics
from visionfleet.workers.logs import configure
from visionfleet.workers.process import ROLE_ENV

log = logging.getLogger(__name__)

QUEUES = ("online", "bulk")


def run_worker(queues: str, *, concurrency: int, hostname: str | None, loglevel: str) -> int:
    chosen = [q.strip() for q in queues.split(",") if q.strip()]
    unknown = set(chosen) - set(QUEUES)
    if not chosen or unknown:
        raise ConfigError(f"--queues {queues!r}: use online, bulk, or online,bulk")
    serving = ExporterSettings.from_env()
    check_settings()
    names = [_name(q, hostname, several=len(chosen) > 1) for q in chosen]
    if serving.port is not None or set(chosen) == set(QUEUES):
        common = ["--concurrency", str(concurrency), "--loglevel", loglevel]
        workers = [["--queues", q, *common, "--hostname", n] for q, n in zip(chosen, names)]
        configure(loglevel)  # what this process says: its port, its workers' names
        return _supervised(workers, serving, expected=(concurrency if "bulk" in chosen else 0) + ("online" in chosen))
    from visionfleet.workers.allocator import reexec_with_tcmalloc

    reexec_with_tcmalloc(["-m", "visionfleet.cli", *sys.argv[1:]])
    return _celery_worker(chosen[0], concurrency=concurrency, hostname=names[0], loglevel=loglevel)


def _supervised(workers: list[list[str]], serving: ExporterSettings, expected: int) -> int:
    """Celery workers under this process, which serves their metrics and probes when asked to.

    They run in their own session, so a Ctrl-C at the terminal reaches them once, from here (the
    terminal's copy and ours would be two: Celery's cold shutdown), and they exit if this process is killed.
    """
    below = {"VISIONFLEET_PARENT_PID": str(os.getpid())}
    nodes = [host_format(args[args.index("--hostname") + 1]) for args in workers]
    if serving.port is None:
        log.info("starting workers", extra={"nodes": nodes, "metrics_port": None})
        return WorkerProcesses([(args, below) for args in workers], own_session=True).supervise()
    exporter = Exporter(serving, share_metrics(), expected)
    exporter.start()
    log.info("starting workers", extra={"nodes": nodes, "metrics_port": exporter.port})
    try:
        # The workers below write into the shared folder and serve nothing themselves.
        below.update({"VISIONFLEET_METRICS_PORT": "off", SERVED_PORT_ENV: str(exporter.port)})
        return WorkerProcesses([(args, below) for args in workers], own_session=True).supervise(
            on_signal=lambda: setattr(exporter, "stopping", True))
    finally:
        exporter.stop()


def check_settings() -> None:
    """Read every setting a worker reads, here and at once: a bad value stops this command
    with its message (exit 2) before any Celery worker starts or says it is ready, in every mode."""
    from visionfleet.broker.scaling import Policy
    from visionfleet.broker.settings import BrokerSettings
    from visionfleet.pipeline.gpu_decode import check_decoder
    from visionfleet.pipeline.labeller import LoadSettings
    from visionfleet.pipeline.runtimes.choice import choose_engine
    from visionfleet.reports.run import prices_from_env
    from visionfleet.workers import allocator, drain, heartbeat
    from visionfleet.workers.online import OnlineSettings
    from visionfleet.workers.settings import WorkerSettings

    for settings in (BrokerSettings, WorkerSettings, OnlineSettings, ExporterSettings, Policy):
        settings.from_env()
    runtime = RuntimeSettings.from_env()
    choose_engine(runtime.runtime, runtime.precision, cuda=False)  # a pair no machine runs
    # GPU decode on a machine without a GPU or torchvision: known now, not at the first job.
    check_decoder(LoadSettings.from_env().decode, "cuda" if has_cuda(runtime.device) else "cpu")
    allocator.choice()
    drain.spot_poll_s()
    heartbeat.beat_every_s()
    env_int("VISIONFLEET_ONLINE_THREADS", 1)
    prices_from_env()  # each job's _REPORT.json prices it


def _name(queue: str, hostname: str | None, *, several: bool) -> str:
    """A Celery node name of its own: two nodes of one name on a host clash (RabbitMQ refuses the second's
    remote-control queue), so by default it carries this command's process id, e.g. ``bulk-4242@host``."""
    if hostname:
        return f"{queue}-{hostname}" if several else hostname
    return f"{queue}-{os.getpid()}@%h"


def _celery_worker(queue: str, *, concurrency: int, hostname: str, loglevel: str) -> int:
    os.environ[ROLE_ENV] = queue
    cores = os.cpu_count() or 1
    if queue == "online":
        os.environ.setdefault("VISIONFLEET_THREADS", str(env_int("VISIONFLEET_ONLINE_THREADS", 1)))
        # Enough threads (each holds one request while it fetches, decodes
        # and waits for its batch) to fill two batches: one forming, one running.
        threads = 2 * RuntimeSettings.from_env().max_batch_size
        pool = ["--pool", "threads", "--concurrency", str(threads)]
    else:
        os.environ.setdefault("VISIONFLEET_THREADS", str(max(1, cores // concurrency)))
        pool = ["--pool", "prefork", "--concurrency", str(concurrency)]
    from visionfleet.broker.celery_app import app

    argv = ["worker", "--queues", queue_name(queue), "--loglevel", loglevel, *pool, "--hostname", hostname]
    if app.conf.broker_url.startswith("filesystem://"):
        # The filesystem transport has no fanout: skip the broadcast features.
        argv += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
    app.worker_main(argv)
    return 0

"""``visionfleet worker``: which Celery worker processes to run, and how.

- ``bulk``: prefork pool, one shard per process at a time, the model in
  each pool child, all the cores' threads.
- ``online``: a threads pool (one model, shared), enough task threads to
  fill a model batch (prefetch never starves the batcher), one torch thread
  on CPU so it leaves the cores to bulk work.
- both (the default): one of each, as two processes under this one, so an
  online request never waits behind a running shard.

One command is one worker *instance*, the unit every count of workers counts
(``scale``, ``stats``, ``/metrics``, ``status``), named by ``-n`` (``w2@%h``)
or ``PID@host``; its Celery nodes are ``bulk-NAME`` and ``online-NAME`` (or
NAME itself when it runs one queue). ``drain --worker`` takes either.
"""
import dataclasses
import logging
import os
import sys

from celery.utils.nodenames import default_nodename, host_format

from visionfleet.broker.routes import queue_name
from visionfleet.broker.settings import BrokerSettings
from visionfleet.cli.supervisor import WorkerProcesses
from visionfleet.pipeline.envvars import env_int, env_str
from visionfleet.pipeline.errors import ConfigError
from visionfleet.pipeline.model_spec import check_model_spec, is_plugin
from visionfleet.pipeline.runtimes.choice import choose_engine, cpu_has_bf16, has_cuda
from visionfleet.workers.exporter import FLEET_CACHE_S, SERVED_PORT_ENV, Exporter, share_metrics
from visionfleet.workers.logs import configure
from visionfleet.workers.settings import INSTANCE_ENV, Settings

log = logging.getLogger(__name__)

QUEUES = ("online", "bulk")


def run_worker(broker: BrokerSettings, queues: str, *, concurrency: int, hostname: str | None, loglevel: str) -> int:
    chosen = [q.strip() for q in queues.split(",") if q.strip()]
    unknown = set(chosen) - set(QUEUES)
    if not chosen or unknown:
        raise ConfigError(f"--queues {queues!r}: use online, bulk, or online,bulk")
    settings = check_settings(broker)
    if settings.worker.instance is None:  # else a command above named it: these are its workers
        worker = dataclasses.replace(settings.worker, instance=instance_name(hostname or f"{os.getpid()}@%h"))
        settings = dataclasses.replace(settings, worker=worker)
    names = [_name(q, hostname, several=len(chosen) > 1) for q in chosen]
    if settings.serving.port is not None or set(chosen) == set(QUEUES):
        common = ["--concurrency", str(concurrency), "--loglevel", loglevel]
        workers = [["--queues", q, *common, "--hostname", n] for q, n in zip(chosen, names)]
        configure(loglevel)  # what this process says: its port, its workers' names
        return _supervised(workers, settings, expected=(concurrency if "bulk" in chosen else 0) + ("online" in chosen))
    from visionfleet.workers.allocator import reexec_with_tcmalloc

    reexec_with_tcmalloc(["-m", "visionfleet.cli", *sys.argv[1:]])
    return _celery_worker(chosen[0], settings, concurrency=concurrency, hostname=names[0], loglevel=loglevel)


def _supervised(workers: list[list[str]], settings: Settings, expected: int) -> int:
    """Celery workers under this process, which serves their metrics and probes when asked to.

    They run in their own session, so a Ctrl-C at the terminal reaches them once, from here (the
    terminal's copy and ours would be two: Celery's cold shutdown), and they exit if this process is killed.
    """
    from visionfleet.broker.celery_app import make_app
    from visionfleet.workers.gauges import FleetCollector

    below = {"VISIONFLEET_PARENT_PID": str(os.getpid()), INSTANCE_ENV: settings.worker.instance}
    nodes = [host_format(args[args.index("--hostname") + 1]) for args in workers]
    if settings.serving.port is None:
        log.info("starting workers", extra={"instance": settings.worker.instance, "nodes": nodes,
                                            "metrics_port": None})
        return WorkerProcesses([(args, below) for args in workers], own_session=True).supervise()
    app = make_app(settings.broker)
    exporter = Exporter(settings.serving, share_metrics(), expected, app,
                        FleetCollector(FLEET_CACHE_S, app, settings.broker, settings.policy))
    exporter.start()
    log.info("starting workers", extra={"instance": settings.worker.instance, "nodes": nodes,
                                        "metrics_port": exporter.port})
    try:
        # The workers below write into the shared folder and serve nothing themselves.
        below.update({"VISIONFLEET_METRICS_PORT": "off", SERVED_PORT_ENV: str(exporter.port)})
        return WorkerProcesses([(args, below) for args in workers], own_session=True).supervise(
            on_signal=lambda: setattr(exporter, "stopping", True))
    finally:
        exporter.stop()


def check_settings(broker: BrokerSettings) -> Settings:
    """Read every setting a worker reads, here and at once: a bad value stops this command
    with its message (exit 2) before any Celery worker starts or says it is ready, in every mode."""
    from visionfleet.pipeline.gpu_decode import check_decoder
    from visionfleet.workers import allocator

    settings = Settings.from_env(broker)
    runtime, cuda = settings.runtime, has_cuda(settings.runtime.device)
    check_model_spec(settings.model, local=True)  # its own model (online, the bulk preload)
    # A pair no machine runs, or one that is a trap on this one (fp16 on its CPU): known now, not at the first
    # job. A plug-in runs as its factory builds it: not judged.
    gpu_or_plugin = cuda or is_plugin(settings.model)
    choose_engine(runtime.runtime, runtime.precision, cuda=gpu_or_plugin, cpu_bf16=not gpu_or_plugin and cpu_has_bf16())
    check_decoder(settings.load.decode, "cuda" if cuda else "cpu")  # GPU decode without a GPU or torchvision
    allocator.choice()
    env_int("VISIONFLEET_ONLINE_THREADS", 1)
    return settings


def instance_name(name: str) -> str:
    """A worker instance's name as Celery would spell a node of that name: ``w2@%h`` is ``w2@thishost``,
    ``w2`` alone ``w2@thishost``."""
    return default_nodename(host_format(name))


def node_names(instance: str) -> list[str]:
    """The Celery node names an instance named ``instance`` may run: itself (one queue) and one per queue."""
    name = instance_name(instance)
    return [name, *(f"{queue}-{name}" for queue in QUEUES)]


def _name(queue: str, hostname: str | None, *, several: bool) -> str:
    """A Celery node name of its own: two nodes of one name on a host clash (RabbitMQ refuses the second's
    remote-control queue), so by default it carries this command's process id, e.g. ``bulk-4242@host``."""
    if hostname:
        return f"{queue}-{hostname}" if several else hostname
    return f"{queue}-{os.getpid()}@%h"


def _celery_worker(queue: str, settings: Settings, *, concurrency: int, hostname: str, loglevel: str) -> int:
    """This process becomes the Celery worker, with ``settings`` handed over to it (``workers/settings.py``)."""
    from visionfleet.broker.celery_app import make_app
    from visionfleet.workers.settings import use

    if queue == "online":
        threads = env_int("VISIONFLEET_ONLINE_THREADS", 1)
        # Enough task threads (each holds one request while it fetches, decodes
        # and waits for its batch) to fill two batches: one forming, one running.
        pool = ["--pool", "threads", "--concurrency", str(2 * settings.runtime.max_batch_size)]
    else:
        threads = max(1, (os.cpu_count() or 1) // concurrency)
        pool = ["--pool", "prefork", "--concurrency", str(concurrency)]
    if env_str("VISIONFLEET_THREADS") is None:  # model threads: the role's share, unless set
        settings = dataclasses.replace(settings, runtime=dataclasses.replace(settings.runtime, threads=threads))
    use(dataclasses.replace(settings, role=queue))
    app = make_app(settings.broker)
    argv = ["worker", "--queues", queue_name(queue, settings.broker.namespace), "--loglevel", loglevel, *pool,
            "--hostname", hostname]
    if app.conf.broker_url.startswith("filesystem://"):
        # The filesystem transport has no fanout: skip the broadcast features.
        argv += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
    app.worker_main(argv)
    return 0

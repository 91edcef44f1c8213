"""Starting work on a job (a new one, or a resumed one): enqueue its shards,
and in embedded mode run them here with workers this command starts."""
import os
from collections.abc import Callable

import click

from visionfleet.broker.planner import DEFAULT_SHARD_SIZE, JobSpec, check_access, plan_job
from visionfleet.broker.settings import BrokerSettings
from visionfleet.checkpoints.state import Progress, StateStore
from visionfleet.cli.progress import describe, wait as wait_for
from visionfleet.cli.reach import check_broker, reachable_store
from visionfleet.cli.supervisor import WorkerProcesses
from visionfleet.pipeline.envvars import env_str
from visionfleet.pipeline.models import DEFAULT_MODEL
from visionfleet.pipeline.storage import is_oss

Send = Callable[[str, int], None]

NO_WORKER_HINT_S = 30  # a worker that is up takes a shard within seconds


def embedded_workers(settings: BrokerSettings, count: int) -> WorkerProcesses:
    """``count`` bulk workers sharing this machine's cores, logging under VISIONFLEET_HOME."""
    threads = str(max(1, (os.cpu_count() or 1) // count))
    return WorkerProcesses([(["--queues", "bulk", "--hostname", f"embedded-{os.getpid()}-{i}@%h"],
                             {"VISIONFLEET_THREADS": threads}) for i in range(count)],
                           log_dir=settings.home / "logs")


def _drive(start: Callable[[StateStore, Send], str], *, wait: bool, workers: int) -> int:
    """Run ``start`` (which enqueues shards through ``send`` and returns the job id), then
    wait when asked, or always in embedded mode, where no fleet would run it otherwise.
    Prints the job id alone on the last line of stdout; exit code 1 if the job failed."""
    settings = BrokerSettings.from_env()
    store = reachable_store(settings)
    from visionfleet.broker.celery_app import app
    from visionfleet.broker.routes import RELABEL_SHARD_TASK

    def send(job_id: str, shard: int) -> None:
        app.send_task(RELABEL_SHARD_TASK, args=[job_id, shard])

    final: Progress | None = None
    if settings.embedded:
        with embedded_workers(settings, workers) as fleet:
            job_id = start(store, send)
            final = wait_for(store, job_id, bar=True, check=fleet.check_alive)
    else:
        check_broker(app)
        job_id = start(store, send)
        if wait:
            final = wait_for(store, job_id, bar=True, hint_after_s=NO_WORKER_HINT_S)
    if final is not None:
        click.echo(describe(final), err=True)
    click.echo(job_id)
    return 1 if final is not None and final.state in ("failed", "cancelled") else 0


def run_relabel(source: str, output: str, *, model: str | None, shard_size: int | None, wait: bool, workers: int,
                **options) -> int:
    if options["calibration"] and not is_oss(options["calibration"]):
        options["calibration"] = os.path.abspath(options["calibration"])  # workers do not share our folder
    spec = JobSpec(source=source, output=output, model=model or env_str("VISIONFLEET_MODEL", DEFAULT_MODEL),
                   shard_size=shard_size or DEFAULT_SHARD_SIZE, **options)
    check_access(spec)

    def start(store: StateStore, send: Send) -> str:
        job_id = plan_job(spec, store, send)
        click.echo(f"job {job_id}: planned", err=True)
        return job_id

    return _drive(start, wait=wait, workers=workers)


def run_resume(job_id: str, output: str, *, wait: bool) -> int:
    from visionfleet.checkpoints.resume import resume_job

    def start(store: StateStore, send: Send) -> str:
        pending = resume_job(store, output, job_id, send)
        click.echo(f"job {job_id}: {len(pending)} shard(s) enqueued again", err=True)
        return job_id

    return _drive(start, wait=wait, workers=1)

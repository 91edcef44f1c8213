"""Starting a relabel job: plan and enqueue it, and in embedded mode run it."""
import os

import click

from broker.planner import DEFAULT_SHARD_SIZE, JobSpec, check_access, plan_job
from broker.settings import BrokerSettings
from checkpoints import open_store
from cli.supervisor import WorkerProcesses
from cli.progress import describe, wait as wait_for
from pipeline.models import DEFAULT_MODEL
from pipeline.envvars import env_str


def embedded_workers(settings: BrokerSettings, count: int) -> WorkerProcesses:
    """``count`` bulk workers sharing this machine's cores, logging under VISIONFLEET_HOME."""
    threads = str(max(1, (os.cpu_count() or 1) // count))
    return WorkerProcesses([(["--queues", "bulk", "--hostname", f"embedded-{os.getpid()}-{i}@%h"],
                             {"VISIONFLEET_TORCH_THREADS": threads}) for i in range(count)],
                           log_dir=settings.home / "logs")


def run_relabel(source: str, output: str, *, model: str | None, top_k: int, shard_size: int | None,
                all_files: bool, cache: bool, wait: bool, workers: int) -> int:
    """Exit code: 0 when the job succeeded (or was enqueued without --wait)."""
    settings = BrokerSettings.from_env()
    spec = JobSpec(source=source, output=output, model=model or env_str("VISIONFLEET_MODEL", DEFAULT_MODEL),
                   top_k=top_k, shard_size=shard_size or DEFAULT_SHARD_SIZE, all_files=all_files,
                   cache=cache)
    check_access(spec)
    store = open_store(settings.state_url)
    from broker.celery_app import RELABEL_SHARD_TASK, app

    def send(job_id: str, shard: int) -> None:
        app.send_task(RELABEL_SHARD_TASK, args=[job_id, shard])

    if settings.embedded:
        # No fleet to hand the job to: run it here, start to end.
        with embedded_workers(settings, workers) as fleet:
            job_id = plan_job(spec, store, send)
            click.echo(f"job {job_id}: planned; labelling with {workers} embedded worker(s)", err=True)
            final = wait_for(store, job_id, bar=True, check=fleet.check_alive)
    else:
        job_id = plan_job(spec, store, send)
        final = wait_for(store, job_id, bar=True) if wait else None
    if final is not None:
        click.echo(describe(final), err=True)
    click.echo(job_id)  # alone on the last line of stdout, for scripts
    return 0 if final is None or final.state == "succeeded" else 1


def run_resume(job_id: str, output: str, *, wait: bool) -> int:
    from broker.celery_app import RELABEL_SHARD_TASK, app
    from checkpoints.resume import resume_job

    settings = BrokerSettings.from_env()
    store = open_store(settings.state_url)

    def send(job: str, shard: int) -> None:
        app.send_task(RELABEL_SHARD_TASK, args=[job, shard])

    if settings.embedded:
        with embedded_workers(settings, 1) as fleet:
            pending = resume_job(store, output, job_id, send)
            click.echo(f"job {job_id}: {len(pending)} shard(s) enqueued again", err=True)
            final = wait_for(store, job_id, bar=True, check=fleet.check_alive)
    else:
        pending = resume_job(store, output, job_id, send)
        click.echo(f"job {job_id}: {len(pending)} shard(s) enqueued again", err=True)
        final = wait_for(store, job_id, bar=True) if wait else store.progress(job_id)
    click.echo(describe(final), err=True)
    click.echo(job_id)
    return 0 if final.state in ("succeeded", "running", "queued") else 1

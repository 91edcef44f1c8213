"""Starting work on a job (a new one, or a resumed one): enqueue its shards,
and in embedded mode run them here with workers this command starts."""
import os
import signal
from collections.abc import Callable

import click

from visionfleet.broker.planner import DEFAULT_SHARD_SIZE, JobSpec, check_access, new_job_id, plan_job
from visionfleet.broker.settings import BrokerSettings
from visionfleet.checkpoints.state import StateStore
from visionfleet.cli.progress import JobView, look, resume_command, wait as wait_for
from visionfleet.cli.reach import check_broker, reachable_store
from visionfleet.cli.supervisor import WorkerProcesses
from visionfleet.pipeline.envvars import env_str
from visionfleet.pipeline.models import DEFAULT_MODEL
from visionfleet.pipeline.storage import is_oss

Send = Callable[[str, int], None]
Start = Callable[[StateStore, Send], None]

NO_WORKER_HINT_S = 30  # a worker that is up takes a shard within seconds
INTERRUPTED = 130  # the shell's code for a command stopped by Ctrl-C


def embedded_workers(settings: BrokerSettings, count: int) -> WorkerProcesses:
    """``count`` bulk workers sharing this machine's cores, logging under VISIONFLEET_HOME.

    In their own session, so Ctrl-C reaches this command only and it decides
    how they stop; they exit too if this command is killed outright.
    """
    threads = str(max(1, (os.cpu_count() or 1) // count))
    env = {"VISIONFLEET_THREADS": threads, "VISIONFLEET_PARENT_PID": str(os.getpid())}
    return WorkerProcesses([(["--queues", "bulk", "--hostname", f"embedded-{os.getpid()}-{i}@%h"], env)
                            for i in range(count)], log_dir=settings.home / "logs", own_session=True)


def _drive(job_id: str, start: Start, *, wait: bool, workers: int) -> int:
    """Run ``start`` (which enqueues the job's shards through ``send``), then wait when
    asked, or always in embedded mode, where no fleet would run it otherwise.
    Prints the job id alone on the last line of stdout; exit code 1 if the job failed."""
    settings = BrokerSettings.from_env()
    store = reachable_store(settings)
    from visionfleet.broker.celery_app import app
    from visionfleet.broker.routes import RELABEL_SHARD_TASK

    def send(job: str, shard: int) -> None:
        app.send_task(RELABEL_SHARD_TASK, args=[job, shard])

    if settings.embedded:
        return _run_embedded(job_id, start, store, send, embedded_workers(settings, workers))
    check_broker(app)
    start(store, send)
    if not wait:
        click.echo(job_id)
        return 0
    try:
        final = wait_for(store, job_id, bar=True, hint_after_s=NO_WORKER_HINT_S)
    except KeyboardInterrupt:
        click.echo(f"\nstopped waiting; job {job_id} goes on on the fleet, and "
                   f"`visionfleet status {job_id}` follows it", err=True)
        click.echo(job_id)
        return INTERRUPTED
    return _report(final)


class _Presses:
    """Ctrl-C while embedded workers run: the first leaves the wait (the workers then commit
    what they have labelled and stop); a second stops them at once."""

    def __init__(self, fleet: WorkerProcesses) -> None:
        self.fleet, self.count = fleet, 0

    def __call__(self, signum, frame) -> None:
        self.count += 1
        if self.count == 1:
            raise KeyboardInterrupt
        self.fleet.kill_now()


def _run_embedded(job_id: str, start: Start, store: StateStore, send: Send, fleet: WorkerProcesses) -> int:
    presses = _Presses(fleet)
    previous = signal.signal(signal.SIGINT, presses)
    fleet.start()
    try:
        start(store, send)
        final = wait_for(store, job_id, bar=True, check=fleet.check_alive)
    except KeyboardInterrupt:
        return _interrupted(job_id, store, fleet, presses)
    finally:
        fleet.stop()  # a no-op after an interrupt, which stopped them already
        signal.signal(signal.SIGINT, previous)
    return _report(final)


def _interrupted(job_id: str, store: StateStore, fleet: WorkerProcesses, presses: _Presses) -> int:
    click.echo("\ninterrupted: committing what is labelled (Ctrl-C again stops at once)", err=True)
    fleet.stop()
    if presses.count > 1:
        click.echo("stopped at once: what was committed is kept", err=True)
    from visionfleet.workers.heartbeat import reap_dead_here

    reap_dead_here(store)  # a killed worker's shards are free to the resume at once
    view = look(store, job_id)
    if view is None or not view.progress.planned:
        click.echo(f"job {job_id}: interrupted while listing its source; run the same relabel again", err=True)
    else:
        p = view.progress
        click.echo(f"job {job_id}: interrupted with {p.done}/{p.total} committed; finish it with:\n"
                   f"  {resume_command(job_id, view.root)}", err=True)
    click.echo(job_id)
    return INTERRUPTED


def _report(final: JobView) -> int:
    click.echo(final.line(), err=True)
    click.echo(final.progress.job_id)
    return 1 if final.progress.state in ("failed", "cancelled") else 0


def run_relabel(source: str, output: str, *, model: str | None, shard_size: int | None, wait: bool, workers: int,
                **options) -> int:
    # Workers (and a later `resume`) do not share the folder this was typed in.
    if options["calibration"] and not is_oss(options["calibration"]):
        options["calibration"] = os.path.abspath(options["calibration"])
    if not is_oss(output):
        output = os.path.abspath(output)
    spec = JobSpec(source=source, output=output, model=model or env_str("VISIONFLEET_MODEL", DEFAULT_MODEL),
                   shard_size=shard_size or DEFAULT_SHARD_SIZE, **options)
    check_access(spec)
    job_id = new_job_id()

    def start(store: StateStore, send: Send) -> None:
        plan_job(spec, store, send, job_id)
        click.echo(f"job {job_id}: planned", err=True)

    return _drive(job_id, start, wait=wait, workers=workers)


def run_resume(job_id: str, output: str, *, wait: bool) -> int:
    from visionfleet.checkpoints.resume import resume_job

    def start(store: StateStore, send: Send) -> None:
        pending = resume_job(store, output, job_id, send)
        click.echo(f"job {job_id}: {len(pending)} shard(s) enqueued again", err=True)

    return _drive(job_id, start, wait=wait, workers=1)

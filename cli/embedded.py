"""The embedded default: this command runs the job with worker processes it starts.

No server: kombu's filesystem transport and a SQLite state file under
VISIONFLEET_HOME. Each run has its own queue folder, so messages left by an
interrupted run are reported (with the command that finishes that job), never
run by this one. Ctrl-C drains, and marks the job interrupted until it is
resumed; a second Ctrl-C stops at once.
"""
import os
import shutil
import signal
from collections.abc import Callable

import click

from visionfleet.broker.settings import EMBEDDED_RUN_ENV, BrokerSettings
from visionfleet.checkpoints.job_book import FINAL_STATES, INTERRUPTED as INTERRUPTED_MARK
from visionfleet.checkpoints.state import StateStore
from visionfleet.cli.progress import JobView, look, resume_command, wait as wait_for
from visionfleet.cli.supervisor import WorkerProcesses
from visionfleet.pipeline.errors import VisionfleetError

INTERRUPTED = 130  # the shell's code for a command stopped by Ctrl-C
Start = Callable[[], None]


def workers_for(settings: BrokerSettings, count: int) -> WorkerProcesses:
    """``count`` bulk workers sharing this machine's cores, logging under VISIONFLEET_HOME.

    In their own session, so Ctrl-C reaches this command only and it decides
    how they stop; they exit too if this command is killed outright. What they are
    told beyond this command's environment is given in theirs, at spawn: their run's
    queue folder, their share of the cores, this command's pid.
    """
    threads = str(max(1, (os.cpu_count() or 1) // count))
    # No metrics port: a laptop's job, and several workers here would want the same one.
    env = {"VISIONFLEET_THREADS": threads, "VISIONFLEET_PARENT_PID": str(os.getpid()),
           "VISIONFLEET_METRICS_PORT": "off", EMBEDDED_RUN_ENV: settings.embedded_run}
    return WorkerProcesses([(["--queues", "bulk", "--hostname", f"embedded-{os.getpid()}-{i}@%h"], env)
                            for i in range(count)], log_dir=settings.home / "logs", own_session=True)


class _Presses:
    """Ctrl-C (or SIGTERM) while embedded workers run: the first leaves the wait (the workers
    then commit what they have labelled and stop); a second stops them at once."""

    def __init__(self, fleet: WorkerProcesses) -> None:
        self.fleet, self.count = fleet, 0

    def __call__(self, signum, frame) -> None:
        self.count += 1
        if self.count == 1:
            raise KeyboardInterrupt
        self.fleet.kill_now()


def run(job_id: str, start: Start, store: StateStore, settings: BrokerSettings, workers: int) -> JobView | int:
    """Run the job here to its end: its final view, or the exit code of an interrupted run."""
    from visionfleet.cli.workers import check_settings

    check_settings(settings)  # the workers read the same environment: a bad value stops here, nothing planned
    report_leftovers(settings, store, job_id)
    fleet = workers_for(settings, workers)
    presses = _Presses(fleet)
    previous = {sig: signal.signal(sig, presses) for sig in (signal.SIGINT, signal.SIGTERM)}
    fleet.start()
    try:
        start()
        final = wait_for(store, job_id, bar=True, check=lambda: _check_alive(fleet, store, job_id))
    except KeyboardInterrupt:
        return _interrupted(job_id, store, fleet, presses)
    else:
        # Every shard has ended, so nothing is in flight and there is nothing to drain; Celery's
        # warm shutdown of idle workers still takes seconds (billiard's pool processes sleep a
        # second on their way out). Stop them at once; the store then forgets them.
        fleet.kill_now()
    finally:
        fleet.stop()  # reaps them; a no-op after an interrupt, which stopped them already
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    from visionfleet.workers.heartbeat import reap_dead_here

    reap_dead_here(store)
    shutil.rmtree(settings.broker_dir, ignore_errors=True)  # the job has ended: what is queued is moot
    return final


def _check_alive(fleet: WorkerProcesses, store: StateStore, job_id: str) -> None:
    try:
        fleet.check_alive()
    except VisionfleetError as exc:  # the job cannot go on here: say so where status looks too
        store.set_state(job_id, "failed", str(exc))
        raise


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
        p, finish = view.progress, resume_command(job_id, view.root)
        if p.state not in FINAL_STATES:  # `jobs` and `status` then say why nothing moves, and what finishes it
            store.set_state(job_id, INTERRUPTED_MARK, f"stopped by Ctrl-C or SIGTERM; `{finish}` finishes it")
        click.echo(f"job {job_id}: interrupted with {p.done}/{p.total} committed; finish it with:\n"
                   f"  {finish}", err=True)
    click.echo(job_id)
    return INTERRUPTED


def report_leftovers(settings: BrokerSettings, store: StateStore, own_job: str) -> None:
    """Say which other runs were left unfinished, and how to finish them; clear the queue folders of ended ones."""
    runs = settings.home / "broker"
    for folder in sorted(runs.iterdir()) if runs.is_dir() else ():
        if folder.name in (own_job, "default") or not folder.is_dir():
            continue
        view = look(store, folder.name)
        if view is None or view.progress.state in FINAL_STATES:
            shutil.rmtree(folder, ignore_errors=True)
        elif view.root:
            p = view.progress
            click.echo(f"note: job {folder.name} was left unfinished ({p.done}/{p.total}); this run leaves it "
                       f"alone; `{resume_command(folder.name, view.root)}` finishes it", err=True)

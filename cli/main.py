"""The ``visionfleet`` command: relabel, worker, status."""
import json
import os
import sys
import time

import click

from pipeline.errors import VisionfleetError


def _fail(exc: Exception) -> None:
    click.echo(f"error: {exc}", err=True)
    sys.exit(2)


@click.group()
def main() -> None:
    """Label images with a fleet of Celery workers (embedded default: no server needed)."""


@main.command()
@click.argument("source")
@click.option("--output", "-o", required=True, help="Local folder or oss://bucket/prefix/ for the labels.")
@click.option("--model", default=None, help="Model spec (default: efficientnet_lite0; see README).")
@click.option("--top-k", default=5, show_default=True, type=click.IntRange(1, 1000))
@click.option("--shard-size", default=None, type=click.IntRange(1, 1_000_000),
              help="URIs per shard message  [default: 1000]")
@click.option("--all-files", is_flag=True, help="Label every listed file, not only image suffixes.")
@click.option("--cache", is_flag=True, help="Reuse labels of identical content (dedup cache in Redis).")
@click.option("--wait", is_flag=True, help="Wait for the job to end, showing progress.")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64),
              help="Embedded mode only: worker processes to start.")
def relabel(source, output, model, top_k, shard_size, all_files, cache, wait, workers) -> None:
    """Label every image in SOURCE (folder, manifest or oss:// prefix) into OUTPUT/<job_id>/."""
    from cli.jobs import run_relabel

    try:
        code = run_relabel(source, output, model=model, top_k=top_k, shard_size=shard_size,
                           all_files=all_files, cache=cache, wait=wait, workers=workers)
    except VisionfleetError as exc:
        _fail(exc)
    sys.exit(code)


@main.command()
@click.option("--queues", "-Q", default="online,bulk", show_default=True,
              help="online, bulk, or both (then two worker processes: online requests never wait behind shards).")
@click.option("--concurrency", "-c", default=1, show_default=True, type=click.IntRange(1, 256),
              help="Bulk pool processes; each gets cores/concurrency torch threads.")
@click.option("--hostname", "-n", default=None, help="Worker node name (Celery's -n).")
@click.option("--loglevel", "-l", default="INFO", show_default=True)
def worker(queues, concurrency, hostname, loglevel) -> None:
    """Run a worker (like `celery -A broker.celery_app worker`, plus tcmalloc when installed)."""
    from cli.workers import run_worker

    try:
        sys.exit(run_worker(queues, concurrency=concurrency, hostname=hostname, loglevel=loglevel))
    except VisionfleetError as exc:
        _fail(exc)


@main.command()
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--watch", is_flag=True, help="Refresh until the job ends.")
def status(job_id, as_json, watch) -> None:
    """Show a job's state, counts, speed and ETA."""
    from broker.settings import BrokerSettings
    from checkpoints import open_store
    from checkpoints.state import FINAL_STATES
    from cli.progress import describe

    try:
        store = open_store(BrokerSettings.from_env().state_url)
    except VisionfleetError as exc:
        _fail(exc)
    while True:
        p = store.progress(job_id)
        if p is None:
            _fail(VisionfleetError(f"no job {job_id!r} in the state store; check the id and VISIONFLEET_BROKER_URL"))
        click.echo(json.dumps(p.as_dict()) if as_json else describe(p))
        if not watch or p.state in FINAL_STATES:
            return
        time.sleep(2)


@main.command()
@click.argument("job_id")
@click.option("--output", "-o", required=True, help="The job's DEST, as given to relabel.")
@click.option("--wait", is_flag=True, help="Wait for the job to end, showing progress.")
def resume(job_id, output, wait) -> None:
    """Re-enqueue every unfinished shard of JOB_ID, rebuilding its state from OUTPUT if it was lost."""
    from cli.jobs import run_resume

    try:
        code = run_resume(job_id, output, wait=wait)
    except VisionfleetError as exc:
        _fail(exc)
    sys.exit(code)


@main.command()
@click.argument("job_id")
def cancel(job_id) -> None:
    """Cancel JOB_ID: workers stop its shards at their next commit; nothing more is written."""
    from broker.settings import BrokerSettings
    from checkpoints import open_store

    try:
        store = open_store(BrokerSettings.from_env().state_url)
    except VisionfleetError as exc:
        _fail(exc)
    progress = store.progress(job_id)
    if progress is None:
        _fail(VisionfleetError(f"no job {job_id!r} in the state store; check the id and VISIONFLEET_BROKER_URL"))
    if progress.state in ("succeeded", "failed", "cancelled"):
        _fail(VisionfleetError(f"job {job_id} already ended: {progress.state}"))
    store.set_state(job_id, "cancelled", "cancelled by `visionfleet cancel`")
    click.echo(f"{job_id}: cancelled")


@main.command()
@click.option("--worker", "-w", "names", multiple=True, help="Worker node name (repeatable), e.g. celery@host.")
@click.option("--all", "everyone", is_flag=True, help="Drain every worker.")
def drain(names, everyone) -> None:
    """Ask workers to commit, hand their shards back and exit."""
    if not names and not everyone:
        _fail(VisionfleetError("name workers with --worker NAME (see Flower or `celery inspect ping`) or use --all"))
    try:
        from broker.celery_app import app
    except VisionfleetError as exc:
        _fail(exc)
    replies = app.control.broadcast("visionfleet_drain", destination=list(names) or None, reply=True, timeout=3)
    drained = sorted(name for reply in replies for name in reply)
    for name in drained:
        click.echo(f"{name}: draining")
    if not drained:
        _fail(VisionfleetError("no worker answered; check the names and VISIONFLEET_BROKER_URL"))


@main.command()
@click.argument("uris", nargs=-1, required=True)
@click.option("--timeout", default=30.0, show_default=True, help="Seconds to wait for all answers.")
def classify(uris, timeout) -> None:
    """Label images through the online queue; one JSON record per URI (embedded: in this process)."""
    from cli.online import classify_uris

    try:
        for record in classify_uris(list(uris), timeout=timeout):
            click.echo(json.dumps(record, ensure_ascii=False))
    except VisionfleetError as exc:
        _fail(exc)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def stats(as_json) -> None:
    """Queue depths, the online backlog bound, and the fleet's counters."""
    from cli.online import fleet_stats

    try:
        snapshot = fleet_stats()
    except VisionfleetError as exc:
        _fail(exc)
    if as_json:
        click.echo(json.dumps(snapshot))
        return
    for key, value in snapshot.items():
        click.echo(f"{key}: {value}")


if __name__ == "__main__":
    main()

"""The ``visionfleet`` command."""
import json
import sys
import time

import click

from visionfleet.pipeline.errors import VisionfleetError
from visionfleet.pipeline.runtimes.choice import PRECISIONS, RUNTIMES
from visionfleet.pipeline.sink import DEFAULT_FORMAT, FORMATS

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class _Commands(click.Group):
    """Every command's one error boundary: a ``VisionfleetError`` is the user's
    to fix, and so is a broker or Redis that does not answer: each is printed as
    one line (what is wrong and the fix), no traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except VisionfleetError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(2)
        except Exception as exc:
            from visionfleet.cli.reach import service_error

            message = service_error(exc, ctx.obj)
            if message is None:
                raise
            click.echo(f"error: {message}", err=True)
            ctx.exit(2)


@click.group(cls=_Commands)
@click.version_option(package_name="visionfleet", prog_name="visionfleet")
@click.option("--loglevel", type=click.Choice(LEVELS, case_sensitive=False), default=None,
              help="Log this command's own work (and its libraries') at this level: JSON lines on stderr.")
def main(loglevel) -> None:
    """Label images with a fleet of Celery workers (embedded default: no server needed)."""
    from visionfleet.pipeline.redaction import protect_last_resort

    protect_last_resort()  # warnings logged before (or without) --loglevel: no secret in them either
    if loglevel:
        from visionfleet.workers.logs import configure

        configure(loglevel.upper())


def broker_settings():
    """This command's broker settings: read from the environment once, by the command that needs them
    (one that does not, such as ``diff``, never fails on them), and kept where the error boundary finds them."""
    ctx = click.get_current_context().find_root()
    if ctx.obj is None:
        from visionfleet.broker.settings import BrokerSettings

        ctx.obj = BrokerSettings.from_env()
    return ctx.obj


def _job(job_id: str):
    """(store, progress) of a job the state store knows."""
    from visionfleet.cli.reach import reachable_store

    store = reachable_store(broker_settings())
    progress = store.progress(job_id)
    if progress is None and (purged := store.purged_at(job_id)) is not None:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(purged))
        raise VisionfleetError(
            f"job {job_id} was purged at {when} (`visionfleet purge`): the state store keeps nothing of it; its "
            f"labels stay under DEST/{job_id}/, and `visionfleet resume {job_id} --output DEST` brings its state back")
    if progress is None:
        raise VisionfleetError(
            f"no job {job_id!r} in the state store; check the id and VISIONFLEET_BROKER_URL. An ended job's "
            "state is kept for VISIONFLEET_JOB_TTL_S (7 days by default) or until `visionfleet purge`; its "
            f"labels stay under DEST/{job_id}/, and `visionfleet resume {job_id} --output DEST` brings its state back")
    return store, progress


@main.command()
@click.argument("source")
@click.option("--output", "-o", required=True, help="Local folder or oss://bucket/prefix/ for the labels.")
@click.option("--model", default=None, help="Model spec (default: efficientnet_lite0; see README).")
@click.option("--top-k", default=5, show_default=True, type=click.IntRange(1, 1000),
              help="Labels kept per image, best first.")
@click.option("--shard-size", default=None, type=click.IntRange(1, 1_000_000),
              help="URIs per shard message  [default: 1000]")
@click.option("--all-files", is_flag=True, help="Label every listed file, not only image suffixes.")
@click.option("--cache", is_flag=True, help="Reuse labels of identical content (dedup cache in Redis).")
@click.option("--allow-empty", is_flag=True, help="Accept a source that matches no image (else: exit 2).")
@click.option("--include", multiple=True, metavar="GLOB", help="Keep only keys (or paths) matching GLOB; repeatable.")
@click.option("--exclude", multiple=True, metavar="GLOB", help="Drop keys (or paths) matching GLOB; repeatable.")
@click.option("--runtime", type=click.Choice(RUNTIMES), envvar="VISIONFLEET_RUNTIME", default="auto",
              show_default=True, help="auto: ONNX Runtime on CPU workers, torch on GPU workers.")
@click.option("--precision", type=click.Choice(PRECISIONS), envvar="VISIONFLEET_PRECISION", default="auto",
              show_default=True, help="auto: fp32 on CPU, fp16 on GPU; int8 is calibrated and accuracy-gated.")
@click.option("--calibration", envvar="VISIONFLEET_CALIBRATION", default=None,
              help="int8 calibration images (folder, manifest or oss:// prefix)  [default: the job's own]")
@click.option("--format", "--output-format", "output_format", type=click.Choice(FORMATS), default=DEFAULT_FORMAT,
              show_default=True, help="How the label parts are written: JSON Lines, or Parquet (a table).")
@click.option("--embeddings", is_flag=True,
              help="Add each image's embedding to its record (the built-in model: 1,280 pooled features).")
@click.option("--max-error-rate", default=0.5, show_default=True, type=click.FloatRange(0, 1),
              help="The job fails if more of its records are errors (all are kept); below 1, it also stops "
                   "early when its first 1000 records are all errors of one kind.")
@click.option("--incremental-from", metavar="DEST/JOB_ID", default=None,
              help="A finished job of the same model: skip the inputs it labelled ok whose content is unchanged "
                   "since (same fingerprint); see README.")
@click.option("--wait", is_flag=True, help="Wait for the job to end, showing progress.")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64),
              help="Embedded mode only: worker processes to start.")
def relabel(source, output, wait, workers, **options) -> None:
    """Label every image in SOURCE (folder, manifest or oss:// prefix) into OUTPUT/<job_id>/."""
    from visionfleet.cli.jobs import run_relabel

    typed = click.get_current_context().get_parameter_source("calibration") is click.core.ParameterSource.COMMANDLINE
    if typed and options["precision"] not in ("auto", "int8"):  # auto: a fleet's workers may run int8
        raise VisionfleetError(f"--calibration is used by int8 only, and this job runs {options['precision']} "
                               "(--precision or VISIONFLEET_PRECISION); add --precision int8, or drop --calibration")
    sys.exit(run_relabel(broker_settings(), source, output, wait=wait, workers=workers, **options))


@main.command()
@click.option("--queues", "-Q", default="online,bulk", show_default=True,
              help="online, bulk, or both (then two worker processes: online requests never wait behind shards).")
@click.option("--concurrency", "-c", default=1, show_default=True, type=click.IntRange(1, 256),
              help="Bulk pool processes; each gets cores/concurrency torch threads.")
@click.option("--hostname", "-n", default=None, help="Worker node name (Celery's -n).")
@click.option("--loglevel", "-l", type=click.Choice(LEVELS, case_sensitive=False), default="INFO", show_default=True,
              help="Logs are JSON lines on stderr.")
def worker(queues, concurrency, hostname, loglevel) -> None:
    """Run a worker (like `celery -A visionfleet.broker.celery_app worker`, plus tcmalloc when installed)."""
    from visionfleet.cli.workers import run_worker

    sys.exit(run_worker(broker_settings(), queues, concurrency=concurrency, hostname=hostname,
                        loglevel=loglevel.upper()))


@main.command()
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--watch", is_flag=True, help="Refresh until the job ends.")
def status(job_id, as_json, watch) -> None:
    """Show a job's state, counts, speed, ETA and the workers on it."""
    from visionfleet.checkpoints.job_book import FINAL_STATES
    from visionfleet.cli.progress import look

    store, _ = _job(job_id)
    while True:
        view = look(store, job_id)
        click.echo(json.dumps(view.as_dict()) if as_json else view.line())
        if not watch or view.progress.state in FINAL_STATES:
            return
        time.sleep(2)


@main.command()
@click.argument("job_id")
@click.option("--output", "-o", required=True, help="The job's DEST, as given to relabel.")
@click.option("--wait", is_flag=True, help="Wait for the job to end, showing progress.")
@click.option("--only-unfinished", is_flag=True, help="Leave failed shards failed; retry only those not ended.")
@click.option("--force", is_flag=True, help="Resume a cancelled job too (else: refused, exit 2).")
def resume(job_id, output, wait, only_unfinished, force) -> None:
    """Re-enqueue every unfinished or failed shard of JOB_ID, rebuilding its state from OUTPUT if it was lost."""
    from visionfleet.cli.jobs import run_resume

    sys.exit(run_resume(broker_settings(), job_id, output, wait=wait, only_unfinished=only_unfinished, force=force))


@main.command()
@click.argument("job_id")
def cancel(job_id) -> None:
    """Cancel JOB_ID: workers stop its shards at their next commit; nothing more is written."""
    from visionfleet.checkpoints.job_book import FINAL_STATES

    store, progress = _job(job_id)
    if progress.state in FINAL_STATES:
        raise VisionfleetError(f"job {job_id} already ended: {progress.state}")
    store.set_state(job_id, "cancelled", "cancelled by `visionfleet cancel`")
    click.echo(f"{job_id}: cancelled")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per job, one per line.")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 10_000), help="How many jobs.")
def jobs(as_json, limit) -> None:
    """List recent jobs, newest first: state, progress and age."""
    from visionfleet.cli.progress import job_row
    from visionfleet.cli.reach import reachable_store

    now = time.time()
    for progress in reachable_store(broker_settings()).jobs(limit):
        row = {**progress.as_dict(), "age_s": round(now - progress.created_at)}
        click.echo(json.dumps(row) if as_json else job_row(progress, now))


@main.command()
@click.argument("job_id")
def purge(job_id) -> None:
    """Remove an ended job's state now (its output under DEST stays; `resume` can rebuild it)."""
    from visionfleet.checkpoints.job_book import FINAL_STATES

    store, progress = _job(job_id)
    if progress.state not in FINAL_STATES:
        raise VisionfleetError(f"job {job_id} is {progress.label}; cancel it first (`visionfleet cancel {job_id}`)")
    store.purge(job_id)
    click.echo(f"{job_id}: purged")


@main.command()
@click.option("--worker", "-w", "names", multiple=True,
              help="A worker's name, as given to `worker -n` (w2@%h) or listed by `stats`, or one of its node names "
                   "(bulk-w2@host); repeatable.")
@click.option("--all", "everyone", is_flag=True, help="Drain every worker.")
def drain(names, everyone) -> None:
    """Ask workers to commit, hand their shards back and exit."""
    if not names and not everyone:
        raise VisionfleetError("name workers with --worker NAME (`visionfleet stats` lists them) or use --all")
    from visionfleet.broker.celery_app import make_app
    from visionfleet.cli.workers import node_names

    app = make_app(broker_settings())
    nodes = sorted({node for name in names for node in node_names(name)}) or None
    replies = app.control.broadcast("visionfleet_drain", destination=nodes, reply=True, timeout=3)
    drained = sorted(name for reply in replies for name in reply)
    for name in drained:
        click.echo(f"{name}: draining")
    if not drained:
        raise VisionfleetError("no worker answered; check the names (`visionfleet stats` lists them), "
                               "VISIONFLEET_BROKER_URL and VISIONFLEET_NAMESPACE")


@main.command()
@click.argument("uris", nargs=-1, required=True)
@click.option("--timeout", default=30.0, show_default=True, help="Seconds to wait for all answers.")
@click.option("--model", default=None, metavar="SPEC",
              help="Label with this model, one the online workers allow (VISIONFLEET_MODELS); default: their own.")
def classify(uris, timeout, model) -> None:
    """Label images through the online queue; one JSON record per URI (embedded: in this process)."""
    from visionfleet.cli.online import classify_uris
    from visionfleet.pipeline.location import Location
    from visionfleet.pipeline.model_spec import check_model_spec, is_package

    settings = broker_settings()
    # A relative path means the folder it was typed in, not the worker's: the images', a package's.
    if model is not None and is_package(model):
        model = str(Location.parse(model).absolute())
    if model is not None:
        check_model_spec(model, local=settings.embedded)
    uris = [str(Location.parse(uri).absolute()) for uri in uris]
    for record in classify_uris(settings, uris, timeout=timeout, model=model):
        click.echo(json.dumps(record, ensure_ascii=False))


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def stats(as_json) -> None:
    """Queue depths, the online backlog bound, and the fleet's counters."""
    from visionfleet.cli.online import fleet_stats, stats_table

    snapshot = fleet_stats(broker_settings())
    if as_json:
        click.echo(json.dumps(snapshot))
        return
    for line in stats_table(snapshot):
        click.echo(line)


@main.command()
@click.argument("old")
@click.argument("new")
@click.option("--output", "-o", required=True, help="Folder or oss://bucket/prefix/ for diff.json, changed.jsonl and "
                                                       "report.html.")
@click.option("--sample", type=click.IntRange(1), default=None,
              help="Keep only the N most confident changes in changed.jsonl  [default: all]")
@click.option("--thumbnails", is_flag=True, help="Show OSS images in report.html, as signed URLs (local ones always show).")
def diff(old, new, output, sample, thumbnails) -> None:
    """What NEW's labels changed from OLD's: both are finished jobs' folders, DEST/<job_id> (local or oss://)."""
    from visionfleet.cli.reports import run_diff

    for line in run_diff(old, new, output, sample=sample, thumbnails=thumbnails):
        click.echo(line)


@main.command()
@click.argument("job_id")
@click.option("--output", "-o", required=True, help="Folder or oss://bucket/prefix/ for report.json and report.html.")
@click.option("--price-per-hour", type=click.FloatRange(min=0), default=None,
              help="$ per machine-hour the fleet paid (spot).")
@click.option("--prices", type=click.Path(exists=True, dir_okay=False), default=None,
              help='Price table, JSON: {"INSTANCE_TYPE": {"on_demand": $/h, "spot": $/h}, ...}')
@click.option("--instance-type", default=None, help="The fleet's row in --prices  [default: every row]")
def report(job_id, output, price_per_hour, prices, instance_type) -> None:
    """What JOB_ID took and cost: time, images/s over time, work redone, $ per million images."""
    from visionfleet.cli.reports import run_report

    store, progress = _job(job_id)
    for line in run_report(store, progress, output, price_per_hour=price_per_hour, prices=prices,
                           instance_type=instance_type):
        click.echo(line)


@main.command()
@click.option("--ready", is_flag=True, help="Ask for readiness (models loaded, broker answers, not draining), "
                                            "not only liveness.")
def health(ready) -> None:
    """Exit 0 if this machine's worker answers its probe, else 1 with the reason (for exec probes)."""
    from visionfleet.cli.probes import probe

    ok, said = probe(ready)
    click.echo(said, err=not ok)
    sys.exit(0 if ok else 1)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (for autoscalers and scripts).")
def scale(as_json) -> None:
    """How many workers the fleet should have now, and why: the autoscaling signal."""
    from visionfleet.cli.probes import scale as decide_scale, scale_line

    answer = decide_scale(broker_settings())
    click.echo(json.dumps(answer) if as_json else scale_line(answer))


if __name__ == "__main__":
    main()

"""Starting work on a job (a new one, or a resumed one): enqueue its shards, then
wait for a fleet, or in embedded mode run them here (``cli.embedded``)."""
import dataclasses
import functools
from collections.abc import Callable

import click

from visionfleet.broker.planner import Skip, check_access, new_job_id, plan_job
from visionfleet.broker.settings import BrokerSettings
from visionfleet.checkpoints.hooks import Hooks
from visionfleet.checkpoints.state import StateStore
from visionfleet.cli.embedded import INTERRUPTED
from visionfleet.cli.progress import JobView, wait as wait_for
from visionfleet.cli.reach import check_broker, reachable_store
from visionfleet.pipeline.envvars import env_str
from visionfleet.pipeline.job import DEFAULT_MODEL, DEFAULT_SHARD_SIZE, JobSpec
from visionfleet.pipeline.location import Location
from visionfleet.pipeline.model_spec import is_package
from visionfleet.pipeline.storage import is_oss
from visionfleet.pipeline.words import count
from visionfleet.reports.run import RunReport, prices_from_env

Send = Callable[[str, int], None]
Start = Callable[[StateStore, Send], None]

NO_WORKER_HINT_S = 30  # a worker that is up takes a shard within seconds


def _drive(settings: BrokerSettings, job_id: str, start: Start, *, wait: bool, workers: int) -> int:
    """Run ``start`` (which enqueues the job's shards through ``send``), then wait when
    asked, or always in embedded mode, where no fleet would run it otherwise.
    Prints the job id alone on the last line of stdout; exit code 1 if the job failed."""
    if settings.embedded:  # this run's own queue folder, for its app and for the workers it starts
        settings = dataclasses.replace(settings, embedded_run=job_id)
    store = reachable_store(settings)
    from visionfleet.broker.celery_app import make_app
    from visionfleet.broker.routes import RELABEL_SHARD_TASK

    app = make_app(settings)

    def send(job: str, shard: int) -> None:
        app.send_task(RELABEL_SHARD_TASK, args=[job, shard])

    if settings.embedded:
        from visionfleet.cli import embedded

        final = embedded.run(job_id, lambda: start(store, send), store, settings, workers)
        return final if isinstance(final, int) else _report(final)
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


def _report(final: JobView) -> int:
    click.echo(final.line(), err=True)
    click.echo(final.progress.job_id)
    return 1 if final.progress.state in ("failed", "cancelled") else 0


def run_relabel(settings: BrokerSettings, source: str, output: str, *, model: str | None, shard_size: int | None,
                wait: bool, workers: int, **options) -> int:
    # Workers (and a later `resume`) do not share the folder this was typed in.
    for name in ("calibration", "incremental_from"):
        if options[name]:
            options[name] = _absolute(options[name])
    source, output = _absolute(source), _absolute(output)
    model = model or env_str("VISIONFLEET_MODEL", DEFAULT_MODEL)
    if is_package(model) and not is_oss(model):
        model = _absolute(model)
    spec = JobSpec(source=source, output=output, model=model,
                   shard_size=shard_size or DEFAULT_SHARD_SIZE, **options)
    check_access(spec, embedded=settings.embedded)
    spec, skip = _incremental(spec)
    hooks, job_id = _hooks(), new_job_id()

    def start(store: StateStore, send: Send) -> None:
        plan_job(spec, store, send, job_id, hooks=hooks, skip=skip)
        click.echo(f"job {job_id}: planned", err=True)

    return _drive(settings, job_id, start, wait=wait, workers=workers)


def _incremental(spec: JobSpec) -> tuple[JobSpec, Skip | None]:
    """What an incremental run leaves out of its plan; its base is checked now, before anything is written,
    against the job's model package as it is now (its digest, which pinning then holds it to)."""
    if spec.incremental_from is None:
        return spec, None
    from visionfleet.pipeline import preprocess
    from visionfleet.pipeline.model_pin import digest_of
    from visionfleet.reports.incremental import open_base, unchanged_skipped

    spec = dataclasses.replace(spec, model_digest=digest_of(spec.model))
    chain = open_base(spec)
    # The workers' decode is theirs to set, like every VISIONFLEET_ variable: planning reads the same one.
    return spec, functools.partial(unchanged_skipped, chain=chain, embeddings=spec.embeddings,
                                   preprocess=preprocess.current())


def run_resume(settings: BrokerSettings, job_id: str, output: str, *, wait: bool,
               only_unfinished: bool = False, force: bool = False) -> int:
    from visionfleet.checkpoints.resume import refuse_cancelled, resume_job

    output, hooks = _absolute(output), _hooks()
    if not force:  # before any worker starts here: a cancelled job is left as it is
        refuse_cancelled(reachable_store(settings).progress(job_id), output)

    def start(store: StateStore, send: Send) -> None:
        resumed = resume_job(store, output, job_id, send, failed_too=not only_unfinished, force=force, hooks=hooks)
        again = f" ({len(resumed.failed)} failed before)" if resumed.failed else ""
        click.echo(f"job {job_id}: {count(len(resumed.shards), 'shard')} enqueued again{again}", err=True)
        if only_unfinished and (failed := store.progress(job_id).failed_shards):
            click.echo(f"job {job_id}: {count(len(failed), 'failed shard')} not retried; `resume` without "
                       "--only-unfinished retries failed shards", err=True)

    return _drive(settings, job_id, start, wait=wait, workers=1)


def _hooks() -> Hooks:
    """What watches a job here: one that ends here (empty, or every shard ended before a resume) has its
    report, priced as this command's environment says."""
    return Hooks([RunReport(prices_from_env())])


def _absolute(uri: str) -> str:
    return str(Location.parse(uri).absolute())

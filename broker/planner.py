"""Planning a relabel job: list the source as a stream, cut it into shards.

Each shard's URI list is written under the job's output before its one
message is sent, so a 50M-image job is ~50k small messages, workers start
on the first shards while listing goes on, and the plan outlives the broker.
An incremental run first joins the whole listing with its base (on disk,
``reports.incremental``), then cuts what is left in listing order.
"""
import contextlib
import itertools
import json
import logging
import os
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import ContextManager

from visionfleet.checkpoints.finalize import finalize_if_complete
from visionfleet.checkpoints.hooks import NO_HOOKS, Hooks
from visionfleet.checkpoints.state import StateStore
from visionfleet.pipeline import layout, shard_lists
from visionfleet.pipeline.access import Access
from visionfleet.pipeline.envvars import env_str
from visionfleet.pipeline.errors import ConfigError
from visionfleet.pipeline.job import Job, JobSpec
from visionfleet.pipeline.model_package import check_package
from visionfleet.pipeline.model_pin import pin
from visionfleet.pipeline.model_spec import check_embeddings, check_model_spec, is_package, is_plugin, package_kind
from visionfleet.pipeline.runtimes.choice import choose_engine, cpu_has_bf16, has_cuda, package_engine
from visionfleet.pipeline.sink import sink_for
from visionfleet.pipeline.sources import is_manifest, iter_entries
from visionfleet.pipeline.storage import IMAGE_SUFFIXES, is_oss, storage_for
from visionfleet.pipeline.storage.base import Entry
from visionfleet.pipeline.words import count

log = logging.getLogger(__name__)


def new_job_id() -> str:
    """Sortable by creation time, unique without coordination."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)


def check_access(spec: JobSpec, *, embedded: bool) -> None:
    """Fail before anything is enqueued (or written to the output) if the model cannot load anywhere (a local
    model package: its model.json or graph is wrong, checked here when its file is here) or is known to give
    no embeddings the job asks for, the engine cannot run anywhere (embedded: on this machine), the workers
    would refuse the model or a place (the same rules, read from this environment), or source or output
    cannot be reached.

    A fleet's local manifest is no workers' place: this command reads it, so this user must be able to."""
    check_model_spec(spec.model, local=embedded)
    if is_package(spec.model) and (embedded or os.path.isfile(spec.model)):
        package = check_package(spec.model)  # model.json and the graph, before anything is written
        if spec.embeddings:
            package.check_embeddings()
    if spec.embeddings:
        check_embeddings(spec.model)
    sink_for(spec.output, spec.output_format)  # an output format no worker writes
    _check_engine(spec, embedded)
    access = Access.from_env().for_job(spec) if embedded else Access.from_env()
    access.check_model(spec.model)
    workers_read = (spec.output, spec.calibration)
    if _read_here(spec.source, embedded):
        _check_readable(spec.source)  # the URIs in it are checked by the workers, as any
    else:
        workers_read = (spec.source, *workers_read)
    for place in filter(None, workers_read):
        access.check_place(place)
    if spec.calibration and not is_oss(spec.calibration) and not os.path.exists(spec.calibration):
        raise ConfigError(f"calibration source {spec.calibration} does not exist; give a folder, a manifest "
                          "or oss://bucket/prefix/ of typical images (VISIONFLEET_CALIBRATION, --calibration)")
    for uri in filter(None, (spec.source, spec.output, spec.calibration)):
        if is_oss(uri):
            storage_for(uri).check_access(uri)
    if not is_oss(spec.output):
        _check_local_output(spec.output)


def _check_engine(spec: JobSpec, embedded: bool) -> None:
    """A pair no machine runs fails the same on a GPU. Embedded, the workers run on this machine, so a pair
    that is a trap on its CPU (fp16) is refused too; a fleet's workers may have GPUs: each judges its own.
    A plug-in runs as its factory builds it, where this cannot judge."""
    cuda = not embedded or is_plugin(spec.model) or has_cuda(env_str("VISIONFLEET_DEVICE", "auto"))
    if is_package(spec.model):  # each kind of package runs on one runtime
        package_engine(package_kind(spec.model), spec.runtime, spec.precision, cuda=cuda)
    else:
        choose_engine(spec.runtime, spec.precision, cuda=cuda, cpu_bf16=not cuda and cpu_has_bf16())


def _read_here(source: str, embedded: bool) -> bool:
    """A fleet's local manifest: only this command reads it (workers read the shard lists it writes)."""
    return not embedded and not is_oss(source) and is_manifest(source)


def _check_readable(manifest: str) -> None:
    try:
        with open(manifest, "rb"):
            pass
    except OSError as exc:
        raise ConfigError(f"manifest {manifest} cannot be read ({exc.strerror}); give a file this user "
                          "can read") from None


def _check_local_output(folder: str) -> None:
    """The output folder can be made and written by this user, checked without making it: nothing is
    written to DEST before planning starts (a later check may still refuse the job)."""
    existing = folder
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise ConfigError(f"--output {folder}: {existing} is a file; give a folder (created if missing) or "
                          "oss://bucket/prefix/")
    if not os.access(existing, os.W_OK | os.X_OK):
        what = "is not writable by this user" if existing == folder else f"cannot be created in {existing}"
        raise ConfigError(f"--output {folder} {what}; give a folder you can write to, or oss://bucket/prefix/")


def _all(entries: Iterator[Entry]) -> ContextManager[tuple[Iterator[Entry], int]]:
    return contextlib.nullcontext((entries, 0))


def chunks(items: Iterator, size: int) -> Iterator[list]:
    while chunk := list(itertools.islice(items, size)):
        yield chunk


def _listing(spec: JobSpec) -> Iterator[Entry]:
    """The source's entries, its first one already found: a source that matches none (or cannot be
    read at all) is refused before anything is written or enqueued."""
    uris = iter_entries(spec.source, all_files=spec.all_files, include=spec.include, exclude=spec.exclude)
    first = next(uris, None)
    if first is None:
        if not spec.allow_empty:
            only = "" if spec.all_files else f" (only files ending {' '.join(IMAGE_SUFFIXES)} are kept)"
            only += "".join(f" --include {p}" for p in spec.include) + "".join(f" --exclude {p}" for p in spec.exclude)
            raise ConfigError(f"source {spec.source} matched no images{only}; check it for a typo, use "
                              "--all-files to take every file, or --allow-empty to accept an empty job")
        return iter(())
    return itertools.chain([first], uris)


# An incremental run's filter (``reports.incremental``): in a ``with``, (the entries to label, how many were skipped).
Skip = Callable[[Iterator[Entry]], ContextManager[tuple[Iterator[Entry], int]]]


def plan_job(spec: JobSpec, store: StateStore, send_shard: Callable[[str, int], None],
             job_id: str | None = None, *, hooks: Hooks = NO_HOOKS, skip: Skip | None = None) -> str:
    """Create the job, write and enqueue its shards as the listing streams (after ``skip`` has left out
    what an incremental run's base labelled); return its id. A model package is pinned first: copied
    under the job's folder, its digest in the job. ``hooks`` hear of the job's end when it ends here
    (an empty one)."""
    job_id = job_id or new_job_id()
    entries = _listing(spec)
    root = layout.job_root(spec.output, job_id)
    digest = pin(spec.model, root, embeddings=spec.embeddings, expected=spec.model_digest)
    job = Job(job_id, replace(spec, output=root, model_digest=digest), time.time(), shard_lists.FORMAT)
    storage = storage_for(root)
    storage.write(layout.job_file(root), json.dumps(job.to_dict(), indent=1).encode())
    store.create_job(job_id, job.to_dict())
    total = shards = skipped = 0
    try:
        with (skip or _all)(entries) as (kept, skipped):
            for index, chunk in enumerate(chunks(kept, spec.shard_size)):
                shard_lists.write(root, index, chunk)
                send_shard(job_id, index)
                total, shards = total + len(chunk), shards + 1
    except BaseException as exc:  # Ctrl-C too: a job half listed cannot be resumed, say so
        what = "was interrupted" if isinstance(exc, KeyboardInterrupt) else f"failed: {exc}"
        store.set_state(job_id, "failed", f"planning {what} after {count(shards, 'shard')}; start the job again")
        raise
    plan = {"total": total, "shards": shards}
    if skip is not None:
        plan.update(skipped=skipped, incremental_from=spec.incremental_from)
    storage.write(layout.plan_file(root), json.dumps(plan).encode())
    store.set_planned(job_id, total, shards, skipped)
    log.info("job planned", extra={"job_id": job_id, **plan})
    finalize_if_complete(store, job_id, hooks)  # an empty source (--allow-empty) is done at once
    return job_id

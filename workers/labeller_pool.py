"""The labellers a worker process holds: one per model, runtime and precision in use.

A job carries its model, runtime and precision, so one fleet serves an fp32
job and an int8 job side by side; a job's ``auto`` keeps the worker's own
settings. INT8 calibrates on ``VISIONFLEET_CALIBRATION`` (the job's, else
the worker's), else on the job's own images, read from its plan. Each job
gets a note under ``DEST/<job>/_engines/`` saying what ran it (and the
length of its embeddings, when the job asks for them), for ``_SUCCESS.json``.
A job's model package runs from the copy pinned when it was planned, fetched
once into the worker's package cache (``model_pin``). Few models fit in
memory: the least recently used goes.
"""
import hashlib
import json
import logging
import posixpath
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator

from visionfleet.pipeline import layout, shard_lists
from visionfleet.pipeline.calibration import CalibrationSet, calibration_set
from visionfleet.pipeline.decode import Geometry
from visionfleet.pipeline.engines import RuntimeSettings
from visionfleet.pipeline.errors import ConfigError
from visionfleet.pipeline.job import Job
from visionfleet.pipeline.labeller import Labeller, LoadSettings
from visionfleet.pipeline.model_loader import load_model
from visionfleet.pipeline.model_pin import PackageCache, cache_root
from visionfleet.pipeline.sources import iter_source
from visionfleet.pipeline.model_spec import is_package
from visionfleet.pipeline.storage import is_oss, storage_for
from visionfleet.pipeline.process_metrics import MODEL_LOAD_SECONDS

log = logging.getLogger(__name__)

MAX_LOADED = 4


class LabellerPool:
    def __init__(self, runtime: RuntimeSettings, load: LoadSettings, owner: str) -> None:
        self.runtime, self.load, self.owner = runtime, load, owner
        self.budget = load.decode_budget()  # the process's one: its labellers and calibrations decode within it
        self.decoders = load.decoders()  # the process's decode processes (or None), shared by its labellers
        self._loaded: OrderedDict[tuple, Labeller] = OrderedDict()
        self._noted: set[tuple[str, str]] = set()
        self._packages = PackageCache(cache_root(runtime.model_cache))

    def default(self, model_spec: str) -> Labeller:
        """The worker's own model and settings (online requests, and the preload of bulk workers)."""
        source = self.runtime.calibration
        return self._get(model_spec, self.runtime, source, lambda: iter_source(source),
                         f"VISIONFLEET_CALIBRATION ({source})")

    def for_job(self, job: Job) -> Labeller:
        """The labeller a job asks for, noted under the job's output."""
        spec = job.spec
        settings = self.runtime.for_job(spec.runtime, spec.precision)
        source = spec.calibration or settings.calibration
        pinned = (layout.pinned_model(job.root, posixpath.basename(spec.model)), spec.model_digest) \
            if spec.model_digest else None
        if source:
            labeller = self._get(spec.model, settings, source, lambda: iter_source(source),
                                 f"the calibration source {source}", pinned=pinned)
        else:
            labeller = self._get(spec.model, settings, "job:" + job.job_id, lambda: shard_lists.iter_planned(job),
                                 f"the job's own images ({spec.source})", own_images=True, pinned=pinned)
        if spec.embeddings and labeller.model.info.embedding_dim is None:
            # Known only now for a plug-in: the job fails with the reason (``workers.tasks``), no shard run.
            raise ConfigError("it gives no embeddings, and the job asks for them (--embeddings): its ModelInfo "
                              "sets no embedding_dim; relabel without --embeddings, or give the model an "
                              "embedding_dim and a predict_embedded")
        self._note(job, labeller)
        return labeller

    def holds(self, labeller: Labeller) -> bool:
        """Whether ``labeller`` is still loaded, not unloaded to make room for another."""
        return any(held is labeller for held in self._loaded.values())

    def _get(self, spec: str, settings: RuntimeSettings, calibration_key: str | None,
             uris: Callable[[], Iterator[str]], where: str, *, own_images: bool = False,
             pinned: tuple[str, str] | None = None) -> Labeller:
        """``own_images``: the calibration images are the job's first ones, so their crops are handed
        to the labeller (an int8 job of 200 images decoded 128 of them twice). ``pinned``: the job's
        pinned package (its model file's URI, its digest), what runs for ``spec``."""
        int8 = settings.precision == "int8"
        digest = pinned[1] if pinned else None
        key = (spec, digest, settings.runtime, settings.precision, calibration_key if int8 else None)
        if key not in self._loaded:
            sets: list[CalibrationSet] = []

            def calibration(geometry: Geometry) -> CalibrationSet:
                sets.append(calibration_set(uris(), geometry, size=settings.calibration_size, where=where,
                                            max_pixels=self.load.max_pixels, max_bytes=self.load.max_file_bytes,
                                            threads=self.load.io_threads, budget=self.budget))
                return sets[-1]

            start = time.monotonic()
            path = self._packages.local(*pinned) if pinned else self._unpinned(spec)
            model = load_model(path, settings, calibration if int8 and calibration_key else None)
            seconds = time.monotonic() - start
            MODEL_LOAD_SECONDS.set(seconds)
            log.info("model loaded", extra={"model": spec, "digest": digest, "owner": self.owner,
                                            "seconds": round(seconds, 2), **model.info.engine})
            decoded = sets[0].by_uri() if own_images and sets else None
            self._loaded[key] = Labeller(model, self.load, decoded, self.budget, spec, self.decoders)
            if len(self._loaded) > MAX_LOADED:
                self._loaded.popitem(last=False)[1].close()
        self._loaded.move_to_end(key)
        return self._loaded[key]

    def close(self) -> None:
        """End the decode processes (the process is stopping)."""
        if self.decoders is not None:
            self.decoders.close()

    def _unpinned(self, spec: str) -> str:
        """What to load for a spec no job pinned: a package on OSS is fetched to a local copy first."""
        return self._packages.current(spec) if is_package(spec) and is_oss(spec) else spec

    def _note(self, job: Job, labeller: Labeller) -> None:
        info = labeller.model.info
        note = {"model": info.name, "model_version": info.version, **(info.engine or {"runtime": "plugin"})}
        if job.spec.embeddings:
            note["embedding_dim"] = info.embedding_dim
        body = json.dumps(note, sort_keys=True)
        name = hashlib.sha256(body.encode()).hexdigest()[:12]
        if (job.job_id, name) not in self._noted:
            storage_for(job.root).write(layout.engine_note(job.root, name), body.encode())
            self._noted.add((job.job_id, name))


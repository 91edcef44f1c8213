"""The data path for URIs: fetch, decode, batch, predict, label.

Fetch and decode run ahead in a thread pool (Pillow and the HTTP client
release the GIL) while the model works on the current batch, so the model
never waits on I/O when there is work queued. Inputs that fail to load
leave before the batch is formed, so one bad image never touches a batch;
inputs whose labels are cached (same bytes, same model) skip the model.
"""
import hashlib
import logging
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np

from visionfleet.pipeline.decode import DEFAULT_DECODE_BUDGET, DEFAULT_MAX_PIXELS
from visionfleet.pipeline.decode_budget import PixelBudget
from visionfleet.pipeline.decode_processes import DecodeProcesses
from visionfleet.pipeline import preprocess
from visionfleet.pipeline.envvars import env_int
from visionfleet.pipeline.errors import ConfigError, InputError, RetryableError
from visionfleet.pipeline.gpu_decode import Deferred, finish, pick_decoder
from visionfleet.pipeline.labels import labels_of
from visionfleet.pipeline.model import Model
from visionfleet.pipeline.records import error_record, ok_record
from visionfleet.pipeline.storage import storage_for
from visionfleet.pipeline.process_metrics import BATCH_SIZE, CACHE_HITS, CACHE_MISSES, DECODE_BUDGET, \
    show_decode_budget, stage

log = logging.getLogger(__name__)

# Significant digits an embedding's values keep in a record. float32 has 7; the 8th to 17th digits that
# Python prints for a float32 widened to a float are noise. On the built-in model's photos: 10.1 kB of JSON
# per embedding instead of 17.4 kB, largest change 9e-7 of the largest value.
EMBEDDING_DIGITS = 6

Check = Callable[[str], str]  # raises InputError for a URI that may not be touched, else names what to open


class LabelCache(Protocol):
    """Labels by content: ``key`` names bytes (a hash) or an object version (an ETag)."""

    def get(self, key: str) -> list[dict] | None: ...

    def put(self, entries: Iterable[tuple[Iterable[str], list[dict]]]) -> None:
        """Each entry's labels under each of its keys; called once per batch, with or without entries."""


@dataclass
class Loaded:
    """One input after fetch and decode: a crop to predict (or one the GPU decodes with its
    batch), an error, or cached labels."""

    uri: str
    crop: np.ndarray | Deferred | None = None
    error: str | None = None
    labels: list[dict] | None = None
    cache_keys: tuple[str, ...] = ()


@dataclass(frozen=True)
class LoadSettings:
    io_threads: int = 8
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_file_bytes: int = 100 * 1024 * 1024
    decode: str = preprocess.DEFAULT_DECODER  # how JPEGs are decoded: gpu_decode.pick_decoder
    decode_budget_pixels: int = DEFAULT_DECODE_BUDGET
    decode_processes: int = 0  # 0: decode in the load threads; else in that many processes (decode_processes.py)

    @classmethod
    def from_env(cls) -> "LoadSettings":
        decode = preprocess.decoder_from_env()
        processes = env_int("VISIONFLEET_DECODE_PROCESSES", 0, minimum=0, maximum=256)
        if processes and decode == "gpu":
            raise ConfigError(f"VISIONFLEET_DECODE_PROCESSES={processes} decodes on the CPU, and "
                              "VISIONFLEET_DECODE=gpu decodes on the GPU; set VISIONFLEET_DECODE_PROCESSES=0 "
                              "or VISIONFLEET_DECODE=fast")
        return cls(
            io_threads=env_int("VISIONFLEET_IO_THREADS", 8, maximum=256),
            max_pixels=env_int("VISIONFLEET_MAX_PIXELS", DEFAULT_MAX_PIXELS),
            max_file_bytes=env_int("VISIONFLEET_MAX_FILE_BYTES", 100 * 1024 * 1024),
            decode=decode,
            decode_budget_pixels=env_int("VISIONFLEET_DECODE_BUDGET_PIXELS", DEFAULT_DECODE_BUDGET),
            decode_processes=processes,
        )

    def decoders(self) -> DecodeProcesses | None:
        """This process's decode processes, started now, or None where it decodes in its load threads."""
        return DecodeProcesses(self.decode, self.decode_processes) if self.decode_processes else None

    def decode_budget(self) -> PixelBudget:
        """A decode budget of the set size, shown in the metrics: one per process, shared by its labellers."""
        DECODE_BUDGET.set(self.decode_budget_pixels)
        return PixelBudget(self.decode_budget_pixels, on_change=show_decode_budget)


class Labeller:
    """Labels URIs with one model; one per worker process, reused across shards and requests."""

    def __init__(self, model: Model, settings: LoadSettings, decoded: dict[str, np.ndarray] | None = None,
                 budget: PixelBudget | None = None, spec: str | None = None,
                 decoders: DecodeProcesses | None = None) -> None:
        """``decoded``: crops already made from some URIs (an int8 job's own calibration images), each
        used instead of decoding that URI again, by the first ``label`` run only. ``budget``: the
        process's decode budget (``LoadSettings.decode_budget``), else one of this labeller's own.
        ``spec``: the model spec it was loaded from, which the label cache's keys name (two files both
        called model.pt are two models, whose labels one worker may serve side by side). ``decoders``: the
        process's decode processes (``LoadSettings.decoders``), which then decode instead of the load threads."""
        self.model = model
        self._cache_scope = f"{spec or model.info.name}@{model.info.version}"
        self._settings = settings
        self._decoded = dict(decoded or {})
        self._budget = budget if budget is not None else settings.decode_budget()
        self._decode = decoders or pick_decoder(settings.decode, model.info.engine.get("device", "cpu"))
        self._preprocess = preprocess.VERSIONS[settings.decode]
        self._pool = ThreadPoolExecutor(settings.io_threads, thread_name_prefix="load")
        # Two batches in flight keep the next batch ready while one predicts.
        self._ahead = 2 * model.info.max_batch_size + settings.io_threads

    def close(self) -> None:
        """Stop the fetch threads; the labeller is not used again."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    def load(self, uri: str, k: int, cache: LabelCache | None = None, check: Check | None = None) -> Loaded:
        """Fetch and decode one input, or find its labels in ``cache``; never raises for a bad input.

        ``check`` refuses a URI this worker may not touch (an InputError: its error record), before any read,
        and names the file it checked, which is then opened only if it is still that file.
        """
        try:
            if check is None:
                return self._load(uri, uri, k, cache)
            return self._load(uri, check(uri), k, cache, nofollow=True)
        except InputError as exc:
            return Loaded(uri, error=str(exc))
        except RetryableError as exc:
            if storage_for(uri).answers(uri):  # the bucket answers: this one object keeps failing
                return Loaded(uri, error=str(exc))
            raise  # the storage fails for everything, not the input: the caller waits it out
        except Exception as exc:  # an unforeseen decoder failure is still about this input
            log.warning("unexpected error loading input", extra={"uri": uri, "error": repr(exc)})
            return Loaded(uri, error=f"cannot process image: {type(exc).__name__}: {exc}")

    def _load(self, uri: str, target: str, k: int, cache: LabelCache | None, *, nofollow: bool = False) -> Loaded:
        """``target``: where ``uri`` is read from (a local path as the access check resolved it)."""
        storage = storage_for(uri)
        keys: tuple[str, ...] = ()
        if cache is not None:
            version = storage.version(uri)  # an ETag costs a HEAD, not a download
            if version is not None:
                keys = (self._key(k, "version", version),)
                if (labels := cache.get(keys[0])) is not None:
                    CACHE_HITS.inc()
                    return Loaded(uri, labels=labels)
        with stage("fetch"):
            data = storage.read(target, max_bytes=self._settings.max_file_bytes, nofollow=nofollow)
        if cache is not None:
            content = self._key(k, "sha256", hashlib.sha256(data).hexdigest())
            if (labels := cache.get(content)) is not None:
                CACHE_HITS.inc()
                cache.put([(keys, labels)])
                return Loaded(uri, labels=labels)
            CACHE_MISSES.inc()
            keys += (content,)
        crop = self._decoded.pop(uri, None)  # made from this URI moments ago, for calibration
        if crop is None:
            with stage("decode"):
                crop = self._decode(data, self.model.info.geometry, max_pixels=self._settings.max_pixels,
                                    budget=self._budget)
        return Loaded(uri, crop=crop, cache_keys=keys)

    def _key(self, k: int, kind: str, value: str) -> str:
        # The spec and version: two files called model.pt, or a package's next version, never share labels.
        return f"{self._cache_scope}:top{k}:{kind}:{value}"

    def records(self, loaded: list[Loaded], k: int, cache: LabelCache | None = None, *,
                embeddings: bool = False) -> list[dict]:
        """One record per loaded input, in order; at most one model batch. ``embeddings``: each ok record
        also carries the model's embedding of its image (as floats)."""
        self._finish_decodes(loaded)
        crops = [item.crop for item in loaded if item.crop is not None]
        predicted, vectors = iter(()), iter(())
        if crops:
            probs, embedded = self._predict(crops, embeddings)
            predicted = iter(labels_of(probs, k, self.model.info))
            vectors = iter(embedding_values(embedded) if embedded is not None else ())
        info, out, fresh = self.model.info, [], []
        for item in loaded:
            if item.error is not None:
                out.append(error_record(item.uri, item.error, info.name, info.version))
                continue
            labels = item.labels
            if labels is None:
                labels = next(predicted)
                fresh.append((item.cache_keys, labels))
            record = ok_record(item.uri, labels, info.name, info.version)
            record["preprocess"] = self._preprocess
            if embeddings:
                record["embedding"] = next(vectors)
            out.append(record)
        if cache is not None:
            cache.put(fresh)  # the batch's labels in one round trip
        return out

    @staticmethod
    def _finish_decodes(loaded: list[Loaded]) -> None:
        """Decode the batch's deferred JPEGs in one GPU call; a file it cannot decode becomes an error."""
        deferred = [item for item in loaded if isinstance(item.crop, Deferred)]
        if not deferred:
            return
        with stage("decode"):
            crops = finish([item.crop for item in deferred])
        for item, crop in zip(deferred, crops):
            if isinstance(crop, InputError):
                item.crop, item.error = None, str(crop)
            else:
                item.crop = crop

    def _predict(self, crops: list[np.ndarray], embeddings: bool) -> tuple[np.ndarray, np.ndarray | None]:
        BATCH_SIZE.observe(len(crops))
        with stage("infer"):
            return self.model.checked_outputs(np.stack(crops), embeddings=embeddings)

    def warm_up(self) -> None:
        """One batch of the largest size through the model: first-run costs (memory plans, kernel
        choice) are paid before the worker says it is ready, not by its first images."""
        height, width = self.model.info.geometry.size
        self.model.checked_predict(np.zeros((self.model.info.max_batch_size, height, width, 3), np.uint8))

    def label(self, uris: Iterable[str], k: int, cache: LabelCache | None = None,
              check: Check | None = None, *, embeddings: bool = False) -> Iterator[dict]:
        """One record per URI, in input order, yielded a batch at a time. With ``embeddings`` every image
        goes through the model: the label cache holds labels, not embeddings, so it is not used."""
        if embeddings:
            cache = None
        pending: deque[Future] = deque()
        source = iter(uris)
        try:
            self._top_up(pending, source, k, cache, check)
            window: list[Loaded] = []
            images = 0
            while pending:
                item = pending.popleft().result()
                self._top_up(pending, source, k, cache, check)
                window.append(item)
                images += item.crop is not None
                if images == self.model.info.max_batch_size:
                    yield from self.records(window, k, cache, embeddings=embeddings)
                    window, images = [], 0
            yield from self.records(window, k, cache, embeddings=embeddings)
        finally:
            for future in pending:
                future.cancel()
            self._decoded.clear()  # the rest were not this run's inputs: memory back, never a stale crop later

    def _top_up(self, pending: deque, source: Iterator[str], k: int, cache: LabelCache | None,
                check: Check | None) -> None:
        while len(pending) < self._ahead:
            uri = next(source, None)
            if uri is None:
                return
            pending.append(self._pool.submit(self.load, uri, k, cache, check))


def embedding_values(vectors: np.ndarray, digits: int = EMBEDDING_DIGITS) -> list[list[float]]:
    """Each row as floats rounded to ``digits`` significant digits (so printed short); 0, inf, nan kept."""
    x = vectors.astype(np.float64)
    rounded = np.isfinite(x) & (x != 0)
    shift = digits - 1 - np.floor(np.log10(np.abs(x, where=rounded, out=np.ones_like(x))))
    # Multiply and divide by exact powers of ten only, so the result is the double nearest the rounded decimal.
    up, down = (np.where(sign * shift > 0, 10.0 ** np.abs(shift), 1.0) for sign in (1, -1))
    return np.where(rounded, np.round(x * up / down) / up * down, x).tolist()

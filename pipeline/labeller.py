"""The data path for a stream of URIs: fetch, decode, batch, predict, label.

Fetch and decode run ahead in a thread pool (Pillow and the HTTP client
release the GIL) while the model works on the current batch, so the model
never waits on I/O when there is work queued. Inputs that fail to load
leave before the batch is formed, so one bad image never touches a batch.
"""
import logging
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from pipeline.decode import DEFAULT_MAX_PIXELS, decode_image
from pipeline.envvars import env_int
from pipeline.errors import InputError, RetryableError
from pipeline.labels import top_k
from pipeline.model import Model
from pipeline.records import error_record, ok_record
from pipeline.storage import storage_for

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadSettings:
    io_threads: int = 8
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_file_bytes: int = 100 * 1024 * 1024

    @classmethod
    def from_env(cls) -> "LoadSettings":
        return cls(
            io_threads=env_int("VISIONFLEET_IO_THREADS", 8, maximum=256),
            max_pixels=env_int("VISIONFLEET_MAX_PIXELS", DEFAULT_MAX_PIXELS),
            max_file_bytes=env_int("VISIONFLEET_MAX_FILE_BYTES", 100 * 1024 * 1024),
        )


class Labeller:
    """Labels URIs with one model; one per worker process, reused across shards."""

    def __init__(self, model: Model, settings: LoadSettings) -> None:
        self.model = model
        self._settings = settings
        self._pool = ThreadPoolExecutor(settings.io_threads, thread_name_prefix="load")
        # Two batches in flight keep the next batch ready while one predicts.
        self._ahead = 2 * model.info.max_batch_size + settings.io_threads

    def load(self, uri: str) -> np.ndarray | str:
        """The decoded crop, or the error message for this input."""
        try:
            data = storage_for(uri).read(uri, max_bytes=self._settings.max_file_bytes)
            return decode_image(data, self.model.info.geometry, max_pixels=self._settings.max_pixels)
        except InputError as exc:
            return str(exc)
        except RetryableError:
            raise  # storage is failing, not the input: the shard retries later
        except Exception as exc:  # an unforeseen decoder failure is still about this input
            log.warning("unexpected error loading input", extra={"uri": uri, "error": repr(exc)})
            return f"cannot process image: {type(exc).__name__}: {exc}"

    def label(self, uris: Iterable[str], k: int) -> Iterator[dict]:
        """One record per URI, in input order, yielded a batch at a time."""
        pending: deque[tuple[str, Future]] = deque()
        source = iter(uris)
        try:
            self._top_up(pending, source)
            window: list[tuple[str, np.ndarray | str]] = []
            images = 0
            while pending:
                uri, future = pending.popleft()
                item = future.result()
                self._top_up(pending, source)
                window.append((uri, item))
                images += not isinstance(item, str)
                if images == self.model.info.max_batch_size:
                    yield from self._flush(window, k)
                    window, images = [], 0
            yield from self._flush(window, k)
        finally:
            for _, future in pending:
                future.cancel()

    def _top_up(self, pending: deque, source: Iterator[str]) -> None:
        while len(pending) < self._ahead:
            uri = next(source, None)
            if uri is None:
                return
            pending.append((uri, self._pool.submit(self.load, uri)))

    def _flush(self, window: list[tuple[str, np.ndarray | str]], k: int) -> Iterator[dict]:
        images = [item for _, item in window if not isinstance(item, str)]
        labels = iter(top_k(self.model.checked_predict(np.stack(images)), k, self.model.info.class_names)
                      if images else [])
        name = self.model.info.name
        for uri, item in window:
            yield error_record(uri, item) if isinstance(item, str) else ok_record(uri, next(labels), name)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

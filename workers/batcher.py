"""Dynamic batching for online requests: gather what arrives together.

The decision is pure (``due``: from the number waiting, the oldest one's
arrival and a clock reading), so it is tested without threads or sleeps.
``DynamicBatcher`` runs it on one thread: requests are submitted from many
task threads, the batch runs on the batcher thread, each caller gets its
own result (or its own exception) through a future.
"""
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class BatchPolicy:
    max_size: int = 32
    max_wait_s: float = 0.005

    def __post_init__(self) -> None:
        if self.max_size < 1 or self.max_wait_s < 0:
            raise ValueError(f"bad batch policy {self}: need max_size >= 1 and max_wait_s >= 0")


def due(waiting: int, oldest_at: float | None, now: float, policy: BatchPolicy) -> bool:
    """Flush now? When the batch is full, or the oldest request has waited long enough."""
    if waiting == 0:
        return False
    return waiting >= policy.max_size or now - oldest_at >= policy.max_wait_s


def wait_left(oldest_at: float | None, now: float, policy: BatchPolicy) -> float | None:
    """How long the batcher may sleep before a flush becomes due (None: until woken)."""
    if oldest_at is None:
        return None
    return max(0.0, oldest_at + policy.max_wait_s - now)


class DynamicBatcher:
    """Runs ``run_batch(items) -> results`` (one result per item, in order) on batches."""

    def __init__(self, run_batch: Callable[[list], Sequence], policy: BatchPolicy,
                 *, clock: Callable[[], float] = time.monotonic,
                 on_batch: Callable[[int, float], None] = lambda size, waited: None) -> None:
        self._run, self.policy, self._clock, self._on_batch = run_batch, policy, clock, on_batch
        self._waiting: list[tuple[Any, Future, float]] = []
        self._closed = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="online-batcher")
        self._thread.start()

    def submit(self, item: Any) -> Future:
        """The item's result to come; once closed, the item runs alone, here."""
        future: Future = Future()
        entry = (item, future, self._clock())
        with self._cond:
            if not self._closed:
                self._waiting.append(entry)
                self._cond.notify()
                return future
        self._run_batch([entry])
        return future

    def close(self) -> None:
        """The thread runs what is waiting, then ends (a model unloaded; a caller that held on
        to this batcher is still answered, by ``submit`` itself)."""
        with self._cond:
            self._closed = True
            self._cond.notify()

    def _take(self) -> list[tuple[Any, Future, float]] | None:
        """The next batch; None once closed with nothing waiting."""
        with self._cond:
            while True:
                oldest = self._waiting[0][2] if self._waiting else None
                now = self._clock()
                if self._closed and not self._waiting:
                    return None
                if self._closed or due(len(self._waiting), oldest, now, self.policy):
                    batch = self._waiting[: self.policy.max_size]
                    del self._waiting[: self.policy.max_size]
                    return batch
                self._cond.wait(wait_left(oldest, now, self.policy))

    def _loop(self) -> None:
        while (batch := self._take()) is not None:
            self._run_batch(batch)

    def _run_batch(self, batch: list[tuple[Any, Future, float]]) -> None:
        self._on_batch(len(batch), self._clock() - batch[0][2])
        try:
            results = self._run([item for item, _, _ in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"batch of {len(batch)} gave {len(results)} results")
        except Exception as exc:  # the callers get the failure; the batcher lives on
            for _, future, _ in batch:
                future.set_exception(exc)
            return
        for (_, future, _), result in zip(batch, results):
            future.set_result(result)

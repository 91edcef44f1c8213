"""Online requests with one model: one URI in, one record out, fast, in shared model batches.

Each request runs on its own task thread (Celery's ``threads`` pool): it
fetches and decodes its image there, in parallel with the others, then
hands the crop to its model's ``DynamicBatcher``, which runs whatever
arrived together as one model batch. Undecodable inputs and cache hits
never wait for a batch. Which model serves a request: ``online_models``.
"""
import json
import logging
from dataclasses import dataclass

from visionfleet.pipeline.envvars import env_choice, env_float, env_int
from visionfleet.pipeline.errors import RetryableError
from visionfleet.pipeline.labeller import Check, LabelCache, Labeller
from visionfleet.pipeline.records import error_record
from visionfleet.pipeline.storage import is_oss, storage_for
from visionfleet.workers.batcher import BatchPolicy, DynamicBatcher
from visionfleet.broker.counters import Counters

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OnlineSettings:
    max_wait_s: float = 0.005
    top_k: int = 5
    cache: bool = True
    write_sidecar: bool = False

    @classmethod
    def from_env(cls) -> "OnlineSettings":
        return cls(
            max_wait_s=env_float("VISIONFLEET_ONLINE_MAX_WAIT_MS", 5.0, maximum=10_000) / 1000,
            top_k=env_int("VISIONFLEET_ONLINE_TOP_K", 5, maximum=1000),
            cache=env_choice("VISIONFLEET_ONLINE_CACHE", "on", ("on", "off")) == "on",
            write_sidecar=env_choice("VISIONFLEET_WRITE_SIDECAR", "off", ("on", "off")) == "on",
        )


def sidecar_uri(uri: str) -> str:
    """Where the labels of an image go beside it: ``<key>.labels.json``."""
    return f"{uri}.labels.json"


class OnlineService:
    """One model's online requests: its labeller and its batcher."""

    def __init__(self, labeller: Labeller, settings: OnlineSettings, cache: LabelCache | None,
                 metrics: Counters, check: Check | None = None) -> None:
        self.labeller, self.settings, self.metrics, self.check = labeller, settings, metrics, check
        self.cache = cache if settings.cache else None
        policy = BatchPolicy(labeller.model.info.max_batch_size, settings.max_wait_s)
        self.batcher = DynamicBatcher(self._run_batch, policy, on_batch=self._batched)

    def close(self) -> None:
        """The model is unloaded: its batcher ends once what waits has run."""
        self.batcher.close()

    def record(self, uri: str) -> dict:
        """The record for one URI; called from many task threads at once."""
        try:
            loaded = self.labeller.load(uri, self.settings.top_k, self.cache, self.check)
        except RetryableError as exc:
            info = self.labeller.model.info
            return error_record(uri, f"storage temporarily unavailable, retry later: {exc}", info.name,
                                info.version)
        if loaded.crop is None:  # an error or a cache hit: no batch needed
            record = self.labeller.records([loaded], self.settings.top_k, self.cache)[0]  # writes the lookup's count
        else:
            record = self.batcher.submit(loaded).result()
        if self.settings.write_sidecar and record["status"] == "ok" and is_oss(uri):
            storage_for(uri).write(sidecar_uri(uri), json.dumps(record).encode())
        return record

    def _run_batch(self, items: list) -> list[dict]:
        return self.labeller.records(items, self.settings.top_k, self.cache)

    def _batched(self, size: int, waited_s: float) -> None:
        self.metrics.batch(size)
        log.debug("online batch", extra={"model": self.labeller.model.info.name, "size": size,
                                         "oldest_waited_ms": round(waited_s * 1000, 2)})

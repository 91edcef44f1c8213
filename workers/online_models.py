"""Which model serves an online request: the worker's own, or one the request names that the worker allows.

A request may name a model spec (``VisionClient.classify(uri, model=SPEC)``); with none, the worker's
own model serves it, as before. Each loaded model has its own ``OnlineService``, so requests for one
model share its batches and never wait in another's. A model loads through the process's
``LabellerPool`` when it is first asked for, one load at a time, while the loaded ones keep serving;
past the pool's ``MAX_LOADED`` the one least recently asked for is unloaded. A model the worker does not allow
(``VISIONFLEET_MODELS``), or one that fails to load, is the request's error record: the worker stays up.
"""
import logging
import threading
import time
from collections import OrderedDict

from visionfleet.broker.counters import Counters
from visionfleet.pipeline.access import Access
from visionfleet.pipeline.errors import ConfigError
from visionfleet.pipeline.faults import infrastructure
from visionfleet.pipeline.labeller import LabelCache
from visionfleet.pipeline.process_metrics import IMAGES, ONLINE_REQUEST_SECONDS
from visionfleet.pipeline.records import error_record
from visionfleet.workers.labeller_pool import LabellerPool
from visionfleet.workers.online import OnlineService, OnlineSettings

log = logging.getLogger(__name__)


class OnlineModels:
    def __init__(self, labellers: LabellerPool, default: str, access: Access, settings: OnlineSettings,
                 cache: LabelCache | None, metrics: Counters) -> None:
        """``default``: the worker's own model spec, for requests that name none."""
        self.labellers, self.default, self.access = labellers, default, access
        self.settings, self.cache, self.metrics = settings, cache, metrics
        self._services: OrderedDict[str, OnlineService] = OrderedDict()  # the least recently asked for first
        self._lock = threading.Lock()  # guards _services
        self._loading = threading.Lock()  # one load at a time; only its holder adds or uses the pool

    def classify(self, uri: str, sent_at: float | None = None, model: str | None = None) -> dict:
        """The record for one URI, by ``model`` (a spec) or else the worker's own; from many task threads at once.

        ``sent_at``: when the client enqueued it (epoch seconds), for the request-time histogram;
        without it (a client that does not say) the time counts from here.
        """
        started = time.time()
        self.metrics.count("online_requests")
        record = self._record(uri, self.default if model is None else model)
        IMAGES.labels("online", record["status"]).inc()
        ONLINE_REQUEST_SECONDS.observe(max(time.time() - (sent_at or started), 0.0))
        return record

    def _record(self, uri: str, spec: str) -> dict:
        try:
            if spec != self.default:  # the worker's own model is allowed whatever the list says
                self.access.check_model(spec)
        except ConfigError as exc:  # before anything is imported or opened for it
            return self._unavailable(uri, spec, str(exc))
        try:
            service = self.service(spec)
        except ConfigError as exc:
            return self._unavailable(uri, spec, f"model {spec} cannot run: {exc}")
        except Exception as exc:  # this worker's own trouble (a corrupt file, out of memory): it stays up
            retry = "; retry later" if infrastructure(exc) is not None else ""
            return self._unavailable(uri, spec, f"model {spec} failed to load on this worker: "
                                                f"{type(exc).__name__}: {exc}{retry}")
        return service.record(uri)

    def _unavailable(self, uri: str, spec: str, reason: str) -> dict:
        log.warning("online request: model unavailable", extra={"model": spec, "uri": uri, "error": reason})
        return error_record(uri, reason, spec)

    def service(self, spec: str) -> OnlineService:
        """The service of model ``spec``, which is loaded first if need be (a failure to load raises)."""
        with self._lock:
            if spec in self._services:
                self._services.move_to_end(spec)
                return self._services[spec]
        with self._loading:
            with self._lock:
                service = self._services.get(spec)
            return service or self._load(spec)

    def _load(self, spec: str) -> OnlineService:
        """Past MAX_LOADED the pool unloads its least recently used model, once the new one has loaded (a
        model that fails to load unloads none): told our order first, that is the one least recently asked for."""
        with self._lock:
            order = list(self._services)
        for loaded in order:
            self.labellers.default(loaded)  # loaded already: only its place in the pool's order
        service = OnlineService(self.labellers.default(spec), self.settings, self.cache, self.metrics,
                                check=self.access.check_uri)
        with self._lock:
            self._services[spec] = service
            unloaded = [name for name, held in self._services.items() if not self.labellers.holds(held.labeller)]
            for name in unloaded:
                self._services.pop(name).close()
        for name in unloaded:
            log.info("online model unloaded", extra={"model": name, "for_model": spec})
        return service

"""The fleet-wide gauges a worker exports, read from the broker and Redis when scraped.

Every worker shows the same numbers (aggregate them with ``max``): the
queues' backlog (waiting plus claimed but unfinished), images left in
running jobs, live workers, the desired worker count (``broker/scaling.py``)
and the online requests the client refused. Read at most once per
``cache_s``; a fleet without Redis (the embedded default) has none.
"""
import logging
import time

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from visionfleet.broker.scaling import Policy
from visionfleet.broker.settings import BrokerSettings

log = logging.getLogger(__name__)


class FleetCollector(Collector):
    """``app``, ``settings`` and ``policy``: what the worker command read at its start."""

    def __init__(self, cache_s: float, app, settings: BrokerSettings, policy: Policy) -> None:
        self.cache_s, self.app, self.settings, self.policy = cache_s, app, settings, policy
        self._read_at = -cache_s
        self._families: list = []
        self._sources = None  # (store, redis client), opened on the first scrape

    def describe(self) -> list:
        return described()

    def collect(self):
        if time.monotonic() - self._read_at >= self.cache_s:
            self._read_at = time.monotonic()
            try:
                self._families = _families(self._read())
            except Exception as exc:  # the worker's own metrics still go out; say once per read why these do not
                log.warning("fleet metrics unavailable", extra={"error": f"{type(exc).__name__}: {exc}"})
                self._families = []
        return iter(self._families)

    def _read(self) -> dict | None:
        """The fleet as the scaling signal sees it; None without a Redis state store."""
        from visionfleet.broker.fleet import look
        from visionfleet.broker.counters import Counters
        from visionfleet.broker.scaling import decide

        if self._sources is None:
            self._sources = _open(self.settings)
        if not self._sources:
            return None
        store, client = self._sources
        fleet, depths = look(store, self.app, self.settings.namespace)
        counters = Counters(client, self.settings.namespace).snapshot()["counters"]
        return {"depths": depths, "decision": decide(fleet, self.policy, time.time()),
                "rejected": counters.get("online_rejected", 0)}


def _open(settings: BrokerSettings) -> tuple:
    """The fleet's store and Redis; () where there is none (embedded, or no Redis state store)."""
    import redis

    from visionfleet.checkpoints import open_store

    if settings.embedded or not settings.state_url.startswith(("redis", "unix")):
        return ()
    return (open_store(settings.state_url, job_ttl_s=settings.job_ttl_s, namespace=settings.namespace),
            redis.Redis.from_url(settings.state_url, decode_responses=True))


def described() -> list:
    """The families, without values: what a scrape may show."""
    return _families(None)


def _families(read: dict | None) -> list:
    backlog = GaugeMetricFamily("visionfleet_queue_backlog", "Messages waiting plus claimed but unfinished "
                                "(claimed: Redis broker only)", labels=["queue"])
    images = GaugeMetricFamily("visionfleet_backlog_images", "Images not yet labelled in running jobs")
    workers = GaugeMetricFamily("visionfleet_workers", "Live worker instances (one `visionfleet worker` each), "
                                "as their heartbeats say")
    desired = GaugeMetricFamily("visionfleet_desired_workers", "Workers the fleet should have now "
                                "(`visionfleet scale --json`)")
    rejected = CounterMetricFamily("visionfleet_online_rejected", "Online requests refused: backlog over its bound")
    if read is None:
        return [backlog, images, workers, desired, rejected]
    for role, depth in read["depths"].items():  # labelled by role, whatever the namespace
        backlog.add_metric([role], depth.backlog)
    decision = read["decision"]
    images.add_metric([], decision.backlog_images)
    workers.add_metric([], decision.workers)
    desired.add_metric([], decision.desired_workers)
    rejected.add_metric([], read["rejected"])
    return [backlog, images, workers, desired, rejected]

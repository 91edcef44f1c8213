"""Waiting out an infrastructure fault, however long it lasts.

A worker that meets a fault (``pipeline.faults``) keeps what it committed,
waits a bounded, jittered while, and tries the same step again, until the
fault passes: a disk that fills for an hour costs an hour, never a shard.
While it waits its heartbeat says so ("waiting: output disk full since
12:03"), so ``status`` shows the reason instead of a silent stall. It logs
the reason when the wait starts, then once per interval, and when the fault
passes; each pause counts in ``visionfleet_fault_waits_total``. A drain
during a wait ends it (``Interrupted``): the caller hands the shard back.
"""
import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

from visionfleet.pipeline.faults import Fault, infrastructure
from visionfleet.pipeline.process_metrics import FAULT_WAITS, WAITING_ON_FAULT
from visionfleet.workers.heartbeat import Activity
from visionfleet.workers.settings import WorkerSettings

log = logging.getLogger(__name__)

T = TypeVar("T")
FIRST_PAUSE_S = 0.5
SLICE_S = 0.25  # how often a pause looks for a drain


class Interrupted(Exception):
    """The worker was told to drain while it waited out a fault."""


class FaultWait:
    """One process's waits. ``clock``, ``sleep`` and ``jitter`` are injectable, so tests need no time."""

    def __init__(self, activity: Activity, settings: WorkerSettings, *, should_stop: Callable[[], bool],
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
                 wall: Callable[[], float] = time.time, jitter: Callable[[], float] = random.random) -> None:
        self.activity, self._settings, self._should_stop = activity, settings, should_stop
        self._clock, self._sleep, self._wall, self._jitter = clock, sleep, wall, jitter
        self._pauses = 0
        self._started: float | None = None  # clock() when this fault began
        self._since: float | None = None  # the same, in wall time: what status shows
        self._logged: float | None = None

    def ride_out(self, step: Callable[[], T], *, job_id: str, shard: int, output: str | None = None,
                 between: Callable[[], None] = lambda: None) -> T:
        """``step()``, tried again after each pause for as long as it fails with an infrastructure fault.

        ``between`` runs after each pause (e.g. to renew a lease); it may raise to stop the waiting.
        Any other exception passes through at once.
        """
        try:
            while True:
                try:
                    result = step()
                except Exception as exc:
                    fault = infrastructure(exc, output)
                    if fault is None:
                        raise
                    self.pause(fault, job_id=job_id, shard=shard)
                    between()
                    continue
                self.passed()
                return result
        except Exception:
            if self._started is not None:  # left for another reason (a lost lease, a bug): no longer waiting
                self._reset()
            raise

    def pause(self, fault: Fault, *, job_id: str, shard: int) -> None:
        """One backoff step for ``fault``; ``Interrupted`` if a drain comes meanwhile."""
        now = self._clock()
        if self._started is None:
            self._started, self._since = now, self._wall()
            WAITING_ON_FAULT.set(1)
        if self._logged is None or now - self._logged >= self._settings.fault_log_every_s:
            log.warning("waiting out a fault", extra={"job_id": job_id, "shard": shard, "fault": fault.kind,
                                                      "reason": fault.reason,
                                                      "waited_s": round(now - self._started, 1)})
            self._logged = now
        self.activity.wait(job_id, shard, fault.reason, self._since)  # the reason may change: say the latest
        FAULT_WAITS.labels(fault.kind).inc()
        self._sleep_unless_drained(self.backoff_s(self._pauses))
        self._pauses += 1

    def backoff_s(self, pauses: int) -> float:
        """Exponential from FIRST_PAUSE_S up to the cap, each drawn in its upper half (jitter); never
        over a third of the lease, so a lease held through a wait is renewed in time."""
        cap = min(self._settings.fault_backoff_max_s, self._settings.lease_ttl_s / 3)
        ceiling = min(FIRST_PAUSE_S * 2 ** min(pauses, 30), cap)
        return ceiling * (0.5 + 0.5 * self._jitter())

    def passed(self) -> None:
        """The step went through: the fault, if there was one, has passed."""
        if self._started is not None:
            log.info("fault passed: carrying on", extra={"waited_s": round(self._clock() - self._started, 1),
                                                          "pauses": self._pauses})
            self._reset()

    def _reset(self) -> None:
        self._started = self._logged = self._since = None
        self._pauses = 0
        self.activity.waited()
        WAITING_ON_FAULT.set(0)

    def _sleep_unless_drained(self, seconds: float) -> None:
        end = self._clock() + seconds
        while True:
            if self._should_stop():
                self._reset()  # no longer waiting: the shard goes back to the queue
                raise Interrupted("told to drain while waiting out a fault")
            left = end - self._clock()
            if left <= 0:
                return
            self._sleep(min(left, SLICE_S))

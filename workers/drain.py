"""Draining a worker before its machine goes away.

Triggers, all ending in the same warm shutdown of the main process:
- SIGTERM (Docker, ECS, Kubernetes) -- Celery's own handler;
- a spot termination notice, polled from ``VISIONFLEET_SPOT_NOTICE_URL`` (by default only on
  Alibaba Cloud ECS; Alibaba gives about five minutes' notice, logged with the time left);
- ``visionfleet drain`` -- a remote-control command, ``visionfleet_drain``;
- the command that started this worker is gone (``VISIONFLEET_PARENT_PID``).

Celery's warm shutdown stops consuming but waits for the running task
without limit, and the task runs in a pool child that hears none of it.
So the main process tells its children (a real-time signal): a draining shard commits
what it has, hands its lease back and returns within a batch. A watchdog
turns the drain into a cold shutdown if it outlasts the deadline; what was
committed stays committed either way.

A worker whose command died, however it died (SIGKILL of it or of its
group), exits too, within the drain deadline and a few seconds: a thread
looks at ``os.getppid()`` every second from the worker's start (one still
retrying a broker that is gone never reaches ``worker_ready``), then drains,
then exits whatever the drain is stuck on. Why not the alternatives:
prctl(PR_SET_PDEATHSIG) fires when the *thread* that forked the child ends,
not its process, and needs ctypes; a pipe watched for EOF needs its write end
closed in every other process that inherits it. The parent pid needs
neither. (Pool processes need none of it: Celery's prefork sets PDEATHSIG
itself, from the thread that runs the pool, so they die with the worker.)
"""
import logging
import os
import signal
import threading
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

import billiard.process
from celery.signals import worker_init, worker_process_init, worker_ready, worker_shutting_down
from celery.worker.control import control_command

from visionfleet.pipeline.process_metrics import DRAINING, SPOT_NOTICE
from visionfleet.workers.settings import at_worker_start, current

log = logging.getLogger(__name__)

ALIBABA_SPOT_NOTICE_URL = "http://100.100.100.200/latest/meta-data/instance/spot/termination-time"
DMI = Path("/sys/class/dmi/id")  # what the machine's firmware says it is
# A real-time signal: after our init hook runs, billiard points SIGUSR1/2 and
# the other classic signals of a pool child at its own exit handler, so an
# idle child told to drain by SIGUSR2 died (exit 70) and Celery started a
# new one, loading the model again, in the middle of the shutdown.
DRAIN_SIGNAL = signal.SIGRTMIN + 2
SPOT_DRAIN_SIGNAL = signal.SIGRTMIN + 3  # the same, and the reason is a spot notice (the run report counts them)
_OFF = ("", "off", "none")

_draining = threading.Event()
_spot = threading.Event()
_watchdog_started = threading.Event()


def draining() -> bool:
    """True once this process (or its parent worker) was told to drain."""
    return _draining.is_set()


def spot_noticed() -> bool:
    """True once this process (or its parent worker) drains because of a spot termination notice."""
    return _spot.is_set()


def _terminate_self(reason: str) -> None:
    log.warning("draining", extra={"reason": reason})
    os.kill(os.getpid(), signal.SIGTERM)  # the same path as a SIGTERM from outside


@worker_process_init.connect
def _listen_in_child(**_) -> None:
    signal.signal(DRAIN_SIGNAL, lambda *_: _draining.set())
    signal.signal(SPOT_DRAIN_SIGNAL, lambda *_: (_spot.set(), _draining.set()))


@worker_shutting_down.connect
def _drain_children(sig=None, how=None, **_) -> None:
    """Main process, inside Celery's signal handler: pass the word on, start the clock."""
    _draining.set()  # a solo pool runs tasks in this very process
    DRAINING.set(1)
    for child in billiard.process.active_children():
        try:
            os.kill(child.pid, SPOT_DRAIN_SIGNAL if _spot.is_set() else DRAIN_SIGNAL)
        except ProcessLookupError:
            pass
    if how == "Warm" and not _watchdog_started.is_set():
        _watchdog_started.set()
        deadline = current().worker.drain_deadline_s
        threading.Thread(target=_watchdog, args=(deadline,), daemon=True, name="drain-watchdog").start()


def _watchdog(deadline_s: float) -> None:
    time.sleep(deadline_s)
    log.error("drain deadline passed: cold shutdown", extra={"deadline_s": deadline_s})
    os.kill(os.getpid(), signal.SIGQUIT)  # Celery's cold shutdown: stop the pool now
    time.sleep(5)
    os._exit(1)


@control_command(name="visionfleet_drain")
def visionfleet_drain(state, **_) -> dict:
    """Remote control: drain this worker (``visionfleet drain``)."""
    threading.Timer(0.1, _terminate_self, args=("visionfleet drain",)).start()  # reply before shutting down
    return {"ok": "draining"}


def spot_notice_url(url: str, dmi: Path = DMI) -> str | None:
    """The URL to poll for ``url`` (the setting): ``auto`` (the default) polls Alibaba's metadata path only on
    an Alibaba Cloud ECS machine, as its firmware says (DMI); elsewhere nothing. An explicit URL wins."""
    if url.lower() in _OFF:
        return None
    if url.lower() == "auto":
        return ALIBABA_SPOT_NOTICE_URL if on_alibaba_ecs(dmi) else None
    return url


def on_alibaba_ecs(dmi: Path = DMI) -> bool:
    def read(name: str) -> str:
        try:
            return (dmi / name).read_text(errors="replace").strip()
        except OSError:
            return ""

    return read("sys_vendor").startswith("Alibaba Cloud") or read("product_name").startswith("Alibaba Cloud ECS")


def seconds_left(termination_time: str, now: float) -> float | None:
    """Seconds from ``now`` to the termination time a notice gives (ISO 8601, UTC); None if unreadable."""
    try:
        when = datetime.fromisoformat(termination_time.replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.timestamp() - now


def spot_notice(url: str, timeout_s: float = 2.0) -> str | None:
    """The termination time if a notice is out; None when it answers 404 or not at all."""
    try:
        with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(url, timeout=timeout_s) as reply:
            body = reply.read(256).decode("utf-8", "replace").strip()
            return body or "now"
    except (urllib.error.URLError, OSError, ValueError):
        return None


def _watch_spot(url: str, every_s: float) -> None:
    while True:
        time.sleep(every_s)
        when = spot_notice(url)
        if when is not None:
            SPOT_NOTICE.set(1)
            _spot.set()
            left = seconds_left(when, time.time())
            log.warning("spot termination notice", extra={
                "termination_time": when, "seconds_left": None if left is None else round(left, 1),
                "drain_deadline_s": current().worker.drain_deadline_s})
            _terminate_self(f"spot termination notice: {when}")
            return


@worker_ready.connect
def _start_spot_watch(sender=None, **_) -> None:
    settings = current().worker
    url = spot_notice_url(settings.spot_notice_url)
    # The embedded default runs on a laptop, not a spot instance: no polling there.
    if url is None or sender.app.conf.broker_url.startswith("filesystem://"):
        log.info("not watching for spot termination notices", extra={
            "why": "embedded" if url else "VISIONFLEET_SPOT_NOTICE_URL is off, or auto and not on Alibaba Cloud ECS"})
        return
    every = settings.spot_poll_s
    threading.Thread(target=_watch_spot, args=(url, every), daemon=True, name="spot-watch").start()
    log.info("watching for spot termination notices", extra={"url": url, "every_s": every})


def _watch_parent(pid: int, every_s: float) -> None:
    while os.getppid() == pid:
        time.sleep(every_s)
    _terminate_self(f"the command that started this worker (pid {pid}) is gone")
    # Past the drain and its watchdog, and still here (stuck on a broker that is gone, say): go now.
    # The pool processes go with this one (PDEATHSIG).
    time.sleep(current().worker.drain_deadline_s + 10)
    log.error("still running long after its command died: exiting now", extra={"parent_pid": pid})
    os._exit(1)


@worker_init.connect
def _exit_with_parent(sender=None, **_) -> None:
    """A worker started by a command that was then killed (SIGKILL, a closed terminal) drains and exits
    instead of staying behind, for good; watched from the start, before it reaches the broker.
    ``VISIONFLEET_PARENT_PID``: set by a command that starts its own workers (``visionfleet worker``, the
    embedded default)."""
    pid = at_worker_start(sender.app).worker.parent_pid
    if pid is not None:
        threading.Thread(target=_watch_parent, args=(pid, 1.0), daemon=True, name="parent-watch").start()

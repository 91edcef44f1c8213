"""A bulk worker process says it is alive, and what it is doing, every few seconds.

The beats let ``status`` show live workers and in-shard progress, and let a
shard whose holder died be taken over once the beats stop (seconds), not
when its lease runs out (minutes). A beat comes from its own thread, so a
long model batch does not silence it; a worker stuck inside the model
still loses its shard when the lease runs out without a commit.
"""
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from visionfleet.checkpoints.worker_registry import WorkerRegistry

log = logging.getLogger(__name__)

LAPSE_AFTER_BEATS = 3  # missed beats before a worker counts as dead


@dataclass
class Activity:
    """What this process is doing; written by the task, read by the beat thread."""

    job_id: str | None = None
    shard: int | None = None
    token: str | None = None
    labelled: int = 0  # labelled since the shard's last commit
    # While an infrastructure fault is waited out: the job and shard, and {"reason", "since"}.
    waiting: dict | None = None
    _waiting_on: tuple[str, int] | None = field(default=None, repr=False)
    # This process's own measure of its speed (the autoscaling signal's per-worker rate):
    # images committed, and seconds spent on shards, since it started.
    images: int = 0
    busy_s: float = 0.0
    _since: float | None = field(default=None, repr=False)
    # Called when a shard starts: a beat then, so the lease is covered (and a death
    # seen) from the first second, not from the next regular beat.
    on_start: Callable[[], None] = field(default=lambda: None, repr=False)
    metrics_port: int | None = None  # where `stats` finds this worker's metrics (``WorkerSettings``)
    instance: str | None = None  # the `visionfleet worker` this process belongs to (``instance_of``)

    def start(self, job_id: str, shard: int, token: str) -> None:
        self.job_id, self.shard, self.token, self.labelled = job_id, shard, token, 0
        self._since = time.monotonic()
        self.on_start()

    def committed(self, images: int) -> None:
        self.images += images
        self.labelled = 0

    def stop(self) -> None:
        if self._since is not None:
            self.busy_s += time.monotonic() - self._since
        self.job_id = self.shard = self.token = self._since = None
        self.labelled = 0

    def wait(self, job_id: str, shard: int, reason: str, since: float) -> None:
        """Waiting out a fault on ``job_id`` (even between two tries of a shard, holding no lease)."""
        self._waiting_on, self.waiting = (job_id, shard), {"reason": reason, "since": since}

    def waited(self) -> None:
        self._waiting_on = self.waiting = None

    def as_info(self) -> dict:
        busy = self.busy_s + (time.monotonic() - self._since if self._since is not None else 0.0)
        info = {"host": socket.gethostname(), "pidns": pid_namespace(), "pid": os.getpid(),
                "instance": self.instance, "images": self.images, "busy_s": round(busy, 3)}
        if self.metrics_port is not None:
            info["metrics_port"] = self.metrics_port
        if self.job_id is not None:
            info.update(job_id=self.job_id, shard=self.shard, token=self.token, labelled=self.labelled)
        elif self._waiting_on is not None:  # no lease: the beat says where it waits, and renews nothing
            info.update(job_id=self._waiting_on[0], shard=self._waiting_on[1])
        if self.waiting is not None:
            info["waiting"] = self.waiting
        return info


class Heartbeat:
    """Beats for ``owner`` from a daemon thread until ``stop``; then the store forgets it."""

    def __init__(self, store: WorkerRegistry, owner: str, activity: Activity, every_s: float) -> None:
        self.store, self.owner, self.activity, self.every_s = store, owner, activity, every_s
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="heartbeat")

    def start(self) -> None:
        self.activity.on_start = self.beat
        self.beat()
        self._thread.start()

    def beat(self) -> None:
        try:
            self.store.beat(self.owner, self.activity.as_info(), self.every_s * LAPSE_AFTER_BEATS)
        except Exception:  # a missed beat is not fatal: the lease still covers the shard
            log.warning("heartbeat failed", exc_info=True)

    def _run(self) -> None:
        while not self._stopped.wait(self.every_s):
            self.beat()

    def stop(self) -> None:
        self._stopped.set()
        self.store.forget(self.owner)


def reap_dead_here(store: WorkerRegistry) -> list[str]:
    """Forget workers of this host whose process is gone (killed, crashed): their shards are free at once,
    and the next sweep (``workers.takeover``) offers them again.

    Returns their owners.
    """
    here = (socket.gethostname(), pid_namespace())
    dead = [w["owner"] for w in store.workers()
            if (w.get("host"), w.get("pidns")) == here and not alive(w.get("pid"))]
    for owner in dead:
        store.forget(owner)
        log.info("dead worker forgotten", extra={"owner": owner})
    return dead


def pid_namespace() -> str:
    """Which process-id space this process sees: containers sharing a host name may not share pids."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def alive(pid: int | None) -> bool:
    if not isinstance(pid, int):
        return True  # nothing to check: let its beats lapse
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, another user's
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    """Exited, not yet reaped (a killed worker's pool process, until init collects it)."""
    fields = proc_stat(pid)
    return bool(fields) and fields[0] == "Z"  # no /proc here: the process exists


def proc_stat(pid: int | str) -> list[str] | None:
    """The fields of ``/proc/PID/stat`` after the command name (state first, then ppid, pgrp, ...);
    None where there is no such file (the process is gone, or no /proc on this system)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()
    except OSError:
        return None

"""Showing a job's progress: one line for people, JSON for scripts, a bar while waiting.

What the store has committed, plus what live workers report in their beats
(labelled, not yet committed), so the numbers move within a shard, and a
job nobody works on says so instead of showing an ETA. A worker waiting out
a fault (a full disk, storage down) says what and since when: the job is
still running, and the line says why it does not move; so does a job whose
embedded run was interrupted (its state stays ``running`` for scripts; people
read ``interrupted``).
"""
import contextlib
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from tqdm import tqdm

from visionfleet.checkpoints.job_book import FINAL_STATES, Progress
from visionfleet.checkpoints.state import StateStore
from visionfleet.checkpoints.worker_registry import instance_of
from visionfleet.pipeline import layout
from visionfleet.pipeline.errors import VisionfleetError
from visionfleet.pipeline.job import Job
from visionfleet.pipeline.words import count

BAR_FORMAT = "{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]"  # the job's rate, not the bar's
WORKERS_EVERY_S = 1.0  # the list of live workers changes at beat pace, not at poll pace


@dataclass
class JobView:
    """A job as its store and its live workers tell it, at ``now`` (seconds since the epoch)."""

    progress: Progress
    workers: list[dict]  # live workers on this job
    now: float
    root: str | None = None  # the job's output folder, DEST/<job_id>
    # (images committed, seconds) since a waiting command first looked, when the job had committed
    # images before (a resumed one): the store's rate spans every run of the job, pauses included.
    this_run: tuple[int, float] | None = None

    @property
    def in_flight(self) -> int:
        return sum(w.get("labelled", 0) for w in self.workers)

    @property
    def state(self) -> str:
        """The stored state, except that a job a worker is waiting on is ``running``, leased or not."""
        queued = self.progress.state == "queued"
        return "running" if queued and self.waiting else self.progress.state

    @property
    def label(self) -> str:
        """The state for people: ``interrupted`` for a job whose run was stopped, until it is resumed."""
        return self.progress.label if self.progress.interrupted else self.state

    @property
    def rate(self) -> str | None:
        """Images per second, and over what when it is this run's alone."""
        if self.this_run and self.this_run[1] > 0:
            return f"{self.this_run[0] / self.this_run[1]:.1f} images/s this run"
        return f"{self.progress.rate:.1f} images/s" if self.progress.rate else None

    @property
    def waiting(self) -> list[dict]:
        """The faults live workers on the job are waiting out: owner, reason, since (epoch seconds)."""
        return [{"owner": w["owner"], **w["waiting"]} for w in self.workers if w.get("waiting")]

    @property
    def unattended_s(self) -> float | None:
        """How long no worker has been seen on a job that has started and not ended; None otherwise."""
        p = self.progress
        if self.workers or p.state != "running":
            return None
        return max(0.0, self.now - (p.seen_at or p.started_at or self.now))

    @property
    def instances(self) -> int:
        """The ``visionfleet worker`` instances on the job: the unit ``scale`` and ``stats`` count."""
        return len({instance_of(w) for w in self.workers})

    def as_dict(self) -> dict:
        workers = [{"owner": w["owner"], "instance": instance_of(w)[0], "shard": w.get("shard"), "labelled": w.get("labelled", 0),
                    "seen_s_ago": round(max(0.0, self.now - w["seen_at"]), 1)} for w in self.workers]
        unattended = self.unattended_s
        body = {**self.progress.as_dict(), "state": self.state}
        if unattended is not None:
            body["eta_s"] = None
        return {**body, "workers": workers, "worker_instances": self.instances, "in_flight": self.in_flight, "waiting": self.waiting,
                "no_worker_for_s": None if unattended is None else round(unattended)}

    def line(self) -> str:
        p = self.progress
        total = str(p.total) if p.planned else f"{p.total}+ (listing)"
        line = f"{p.job_id}: {self.label} {p.done}/{total} done, {count(p.errors, 'error')}"
        if p.skipped:  # an incremental run's: labelled by its base, unchanged since
            line += f", {p.skipped} skipped as unchanged"
        if self.rate:
            line += f", {self.rate}"
        unattended = self.unattended_s
        if unattended is not None and not p.interrupted:  # an interrupted one's reason says what finishes it
            line += f"; no worker has been seen on it for {unattended:.0f}s: {self.fix()}"
        elif p.eta_s is not None:
            line += f", ETA {p.eta_s:.0f}s"
        if self.workers and p.state not in FINAL_STATES:
            line += f", {count(self.instances, 'worker instance')} on it"
            if self.in_flight:
                line += f" ({self.in_flight} labelled, not yet committed)"
            line += "".join(f"; {waiting_line(w)}" for w in self.waiting)
        if p.failed_shards:
            line += f"; {count(len(p.failed_shards), 'failed shard')}: " + "; ".join(
                f"shard {k}: {v}" for k, v in sorted(p.failed_shards.items())[:5])
        if p.reason:
            line += f" ({p.reason})"
        return line

    def fix(self) -> str:
        resume = f"`{resume_command(self.progress.job_id, self.root)}`" if self.root else "`visionfleet resume`"
        return f"start a worker (`visionfleet worker`) on the fleet, or run {resume} here"


def waiting_line(waiting: dict) -> str:
    """``waiting: output disk full (...) on worker W since 12:03:07`` (the viewer's local time)."""
    since = time.strftime("%H:%M:%S", time.localtime(waiting["since"]))
    return f"waiting: {waiting['reason']} on worker {waiting['owner']} since {since}"


def _root(store: StateStore, job_id: str) -> str | None:
    """Where the job writes; None when the store does not know it."""
    stored = store.job_meta(job_id)
    return Job.from_dict(stored).root if stored else None


def look(store: StateStore, job_id: str, workers: list[dict] | None = None, root: str | None = None) -> JobView | None:
    """The job now; ``workers``: every live worker, and ``root``: its output, if already read."""
    progress = store.progress(job_id)
    if progress is None:
        return None
    if root is None:
        root = _root(store, job_id)
    on_job = [w for w in (store.workers() if workers is None else workers) if w.get("job_id") == job_id]
    return JobView(progress, on_job, time.time(), root)


def lost_job(job_id: str, root: str | None) -> str:
    """What to do when the store no longer knows a job that was being waited on."""
    finish = resume_command(job_id, root) if root else f"visionfleet resume {job_id} --output DEST --wait"
    return (f"job {job_id} is no longer in the state store (Redis keeps nothing on disk: was it restarted or "
            f"flushed?); what was committed is safe in the job's output folder, and `{finish}` finishes it")


def resume_command(job_id: str, root: str) -> str:
    """The command that finishes the job whose output is ``root`` (DEST/<job_id>)."""
    dest = layout.dest_of(root, job_id)
    return f"visionfleet resume {job_id} --output {shlex.quote(dest)} --wait"


def wait(store: StateStore, job_id: str, *, bar: bool = True, poll_s: float = 0.2,
         check: Callable[[], None] = lambda: None, hint_after_s: float | None = None,
         clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] | None = None) -> JobView:
    """Block until the job reaches a final state; a progress bar on stderr meanwhile.

    With ``hint_after_s``, a job that no worker has started by then gets one line saying so.
    """
    hint_at = None if hint_after_s is None else clock() + hint_after_s
    workers, workers_at, first = [], None, None
    root = _root(store, job_id)
    with store.state_changes(job_id) as pause, contextlib.closing(_Bar(bar)) as progress_bar:
        while True:
            if workers_at is None or clock() - workers_at >= WORKERS_EVERY_S:
                workers, workers_at = store.workers(), clock()
            view = look(store, job_id, workers, root)
            if view is None:
                raise VisionfleetError(lost_job(job_id, root))
            first = first or (view.progress.done, clock())
            if first[0]:  # committed before this command: its own rate is this run's
                view.this_run = (view.progress.done - first[0], clock() - first[1])
            if hint_at is not None and view.state == "queued" and clock() >= hint_at:
                tqdm.write(no_worker_hint(job_id, hint_after_s), file=sys.stderr)
                hint_at = None
            progress_bar.show(view)
            if view.progress.state in FINAL_STATES:
                return view
            check()
            # Polling paces the bar; a store that can tell wakes the pause when the job ends.
            (sleep or pause)(poll_s)


class _Bar:
    """The bar on stderr, first drawn with the job's first look: never an empty ``0/?`` bar before it."""

    def __init__(self, enabled: bool) -> None:
        self.enabled, self.bar = enabled, None

    def show(self, view: JobView) -> None:
        p = view.progress
        shown = min(p.done + view.in_flight, p.total) if p.planned else p.done + view.in_flight
        waiting = f", {view.waiting[0]['reason'].split(' (')[0]}: waiting" if view.waiting else ""
        rate = view.rate.replace("images/s", "img/s") + ", " if view.rate else ""
        postfix = f"{rate}errors={p.errors}, state={view.label}{waiting}"
        if self.bar is None:
            self.bar = tqdm(total=p.total if p.planned else None, initial=shown, postfix=postfix, unit="img",
                            disable=not self.enabled, file=sys.stderr, dynamic_ncols=True, bar_format=BAR_FORMAT)
        if p.planned and self.bar.total != p.total:
            self.bar.total = p.total
        self.bar.n = max(self.bar.n, shown)  # a beat may lag a commit by a moment: never step back
        self.bar.set_postfix_str(postfix, refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def job_row(p: Progress, now: float) -> str:
    """One line of `visionfleet jobs`."""
    total = str(p.total) if p.planned else f"{p.total}+"
    return (f"{p.job_id}  {p.label:<11}  {p.done}/{total} done  {count(p.errors, 'error')}  "
            f"{_age(now - p.created_at)} ago")


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{max(seconds, 0):.0f}s"


def no_worker_hint(job_id: str, waited_s: float) -> str:
    return (f"no worker has started job {job_id} after {waited_s:.0f}s: is one running? Start one with "
            "`visionfleet worker` and the same VISIONFLEET_BROKER_URL; or press Ctrl-C: the job stays "
            f"queued, and `visionfleet status {job_id}` follows it")

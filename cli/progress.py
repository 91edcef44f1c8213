"""Showing a job's progress: one line for people, JSON for scripts."""
import sys
import time
from collections.abc import Callable

from tqdm import tqdm

from visionfleet.checkpoints.state import FINAL_STATES, Progress, StateStore


def describe(p: Progress) -> str:
    total = str(p.total) if p.planned else f"{p.total}+ (listing)"
    line = f"{p.job_id}: {p.state} {p.done}/{total} done, {p.errors} errors"
    if p.rate:
        line += f", {p.rate:.1f} images/s"
    if p.eta_s is not None:
        line += f", ETA {p.eta_s:.0f}s"
    if p.failed_shards:
        line += f"; {len(p.failed_shards)} failed shard(s): " + "; ".join(
            f"shard {k}: {v}" for k, v in sorted(p.failed_shards.items())[:5])
    if p.reason:
        line += f" ({p.reason})"
    return line


def wait(store: StateStore, job_id: str, *, bar: bool = True, poll_s: float = 0.2,
         check: Callable[[], None] = lambda: None, hint_after_s: float | None = None,
         clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> Progress:
    """Block until the job reaches a final state; a progress bar on stderr meanwhile.

    With ``hint_after_s``, a job that no worker has started by then gets one line saying so.
    """
    progress_bar = tqdm(total=None, unit="img", disable=not bar, file=sys.stderr, dynamic_ncols=True)
    hint_at = None if hint_after_s is None else clock() + hint_after_s
    try:
        while True:
            p = store.progress(job_id)
            if hint_at is not None and p.state == "queued" and clock() >= hint_at:
                tqdm.write(no_worker_hint(job_id, hint_after_s), file=sys.stderr)
                hint_at = None
            if p.planned and progress_bar.total != p.total:
                progress_bar.total = p.total
            progress_bar.n = p.done
            progress_bar.set_postfix(state=p.state, errors=p.errors, refresh=False)
            progress_bar.refresh()
            if p.state in FINAL_STATES:
                return p
            check()
            sleep(poll_s)  # polling a remote store; there is no event to wait on
    finally:
        progress_bar.close()


def no_worker_hint(job_id: str, waited_s: float) -> str:
    return (f"no worker has started job {job_id} after {waited_s:.0f}s: is one running? Start one with "
            "`visionfleet worker` and the same VISIONFLEET_BROKER_URL; or press Ctrl-C: the job stays "
            f"queued, and `visionfleet status {job_id}` follows it")

"""Hooks: what watches a run (metrics, counters, the ledger, the report), told of it as it goes.

A ``Hook`` hears of a run's events and does nothing by default; a plug-in
overrides the events it needs, and lives in the layer of what it depends
on (``workers.watchers``: Prometheus and the ledger; ``broker.counters``: the
fleet's counters; ``reports.run``: ``_REPORT.json``). A process builds
its ``Hooks`` once, at start, and hands them down: the shard runner and
``finalize`` call them and know none of them. Here, in ``checkpoints``,
because ``finalize`` calls them and a lower layer cannot import a higher one.
"""
import logging
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from visionfleet.checkpoints.run_ledger import Usage
from visionfleet.checkpoints.state import StateStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Commit:
    """One commit of a shard: the range just labelled, before or after the store took it."""

    job_id: str
    shard: int
    ok: int
    errors: int
    done: bool     # the shard's last commit
    busy_s: float  # seconds the range took to label


class Hook:
    """Every event a run has for what watches it; each is a no-op until a plug-in overrides it."""

    def on_shard_start(self, job_id: str, shard: int, takeovers: int) -> None:
        """A worker holds the shard's lease and starts on it; ``takeovers``: how often it was taken over."""

    def on_stage(self, stage: str, seconds: float) -> None:
        """One try at a step of a commit (``write``: the part, ``commit``: the store) took ``seconds``."""

    def usage(self, commit: Commit) -> Usage | None:
        """What the commit's work used, written by the store in the commit's own transaction: the ledger
        stays atomic with the commit it counts (a hook contributes to the commit rather than after it)."""
        return None

    def on_commit(self, commit: Commit) -> None:
        """The store took the commit (the part is written, the checkpoint moved)."""

    def on_job_end(self, store: StateStore, job_id: str, state: str) -> None:
        """Every shard has ended and ``finalize`` set the job's final state (``succeeded`` or ``failed``), or
        the job stopped early (``failed``). Two workers ending the last shards at once may both get here, as
        both write the summary."""


class Hooks:
    """Hooks in the order given, each told of every event.

    A hook's exception is logged and goes no further: a hook watches a run
    and never steers it. What it hears of has happened already (a commit is
    fenced and durable when ``on_commit`` comes), so failing the shard for a
    hook would redo committed work, and each retry count towards the poison
    rule that fails a healthy shard for good; a counter or a report lost is
    the lesser harm (``visionfleet report`` writes the report again).
    """

    def __init__(self, hooks: Iterable[Hook] = ()) -> None:
        self._hooks = tuple(hooks)

    def on_shard_start(self, job_id: str, shard: int, takeovers: int) -> None:
        self._each("on_shard_start", job_id, shard, takeovers)

    @contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        """Time one try at a stage into ``on_stage``, whether it succeeds or raises."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self._each("on_stage", stage, time.perf_counter() - start)

    def usage(self, commit: Commit) -> Usage | None:
        """The first usage a hook gives for the commit (one hook keeps the ledger); None if none does."""
        for hook in self._hooks:
            usage = self._call(hook, "usage", commit)
            if usage is not None:
                return usage
        return None

    def on_commit(self, commit: Commit) -> None:
        self._each("on_commit", commit)

    def on_job_end(self, store: StateStore, job_id: str, state: str) -> None:
        self._each("on_job_end", store, job_id, state)

    def _each(self, event: str, *args) -> None:
        for hook in self._hooks:
            self._call(hook, event, *args)

    @staticmethod
    def _call(hook: Hook, event: str, *args):
        try:
            return getattr(hook, event)(*args)
        except Exception as exc:  # a warning: the run goes on, only what this hook keeps lacks it
            log.warning("hook failed", exc_info=True, extra={"hook": type(hook).__name__, "event": event,
                                                             "error": f"{type(exc).__name__}: {exc}"})
            return None


NO_HOOKS = Hooks()  # nothing watches (a library user, a test)

"""The hooks a worker process registers at start: what watches the shards it runs."""
import socket

from visionfleet.broker.counters import CounterHook, Counters
from visionfleet.checkpoints.hooks import Commit, Hook, Hooks
from visionfleet.checkpoints.run_ledger import Usage
from visionfleet.pipeline.process_metrics import COMMITS, IMAGES, SHARD_TAKEOVERS, STAGE_SECONDS
from visionfleet.reports.run import Price, RunReport

MACHINE = socket.gethostname()  # whose work a commit is, in the job's ledger (the run report)


class Prometheus(Hook):
    """The bulk path's Prometheus metrics (``pipeline.process_metrics``), which the worker's ``/metrics`` sums."""

    def on_shard_start(self, job_id: str, shard: int, takeovers: int) -> None:
        if takeovers:
            SHARD_TAKEOVERS.inc()

    def on_stage(self, stage: str, seconds: float) -> None:
        STAGE_SECONDS.labels(stage).observe(seconds)

    def on_commit(self, commit: Commit) -> None:
        IMAGES.labels("bulk", "ok").inc(commit.ok)
        IMAGES.labels("bulk", "error").inc(commit.errors)
        COMMITS.inc()


class Ledger(Hook):
    """Each commit's work, on this machine: the job's ledger, which the store keeps with the commit."""

    def usage(self, commit: Commit) -> Usage:
        return Usage(machine=MACHINE, busy_s=commit.busy_s)


def worker_hooks(counters: Counters, prices: list[Price]) -> Hooks:
    """Every hook a worker runs its shards with; ``prices``: its settings', for each job's report."""
    return Hooks([Ledger(), Prometheus(), CounterHook(counters), RunReport(prices)])

"""The whole state store: every concern, as one object over one connection.

Each concern is its own small interface (``job_book``, ``shard_leases``,
``worker_registry``, ``run_ledger``); a component that needs one names that
one. Steps that must be atomic across concerns stay in one transaction: a
fenced commit writes its ledger usage, a takeover its ledger counts, a beat
its registry record and the lease it keeps alive.
"""
from visionfleet.checkpoints.job_book import JobBook
from visionfleet.checkpoints.run_ledger import RunLedger
from visionfleet.checkpoints.shard_leases import ShardLeases
from visionfleet.checkpoints.worker_registry import WorkerRegistry


class StateStore(JobBook, ShardLeases, WorkerRegistry, RunLedger):
    """Durable-enough, shared job state (``open_store`` picks SQLite or Redis by URL)."""

"""The SQLite store: every concern's mixin over one state file."""
from visionfleet.checkpoints.sqlite.jobs import SqliteJobBook
from visionfleet.checkpoints.sqlite.leases import SqliteLeases
from visionfleet.checkpoints.sqlite.ledger import SqliteLedger
from visionfleet.checkpoints.sqlite.workers import SqliteWorkers
from visionfleet.checkpoints.state import StateStore


class SqliteStore(SqliteJobBook, SqliteLeases, SqliteWorkers, SqliteLedger, StateStore):
    """Built as ``SqliteStore(path, job_ttl_s=...)`` (``sqlite.db.SqliteDb``)."""

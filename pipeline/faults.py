"""Which failures are the infrastructure's: decided here, once.

A shard can meet three kinds of failure. An input's own (missing, corrupt,
one object that keeps answering 5xx) becomes that input's ``error`` record.
The job's (a model that cannot run, an output it may not use) fails the
job at once. The infrastructure's (the state store or the broker out of
reach, the storage failing for every call past its retries, a full or
read-only disk) passes by itself: a worker waits it out and carries on,
and never fails a shard for it. Anything else is a bug, and fails its shard.
"""
import errno
import os
import sqlite3
from dataclasses import dataclass

import kombu.exceptions
import redis

from visionfleet.pipeline.errors import RetryableError

_DISK = {errno.ENOSPC: "disk full", errno.EDQUOT: "disk quota exceeded", errno.EROFS: "disk read-only",
         errno.EIO: "disk I/O error"}
# SQLite result codes that say the file or its disk is in trouble, not that a statement is wrong.
_SQLITE = ("SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_FULL", "SQLITE_IOERR", "SQLITE_CANTOPEN", "SQLITE_READONLY")


@dataclass(frozen=True)
class Fault:
    """An infrastructure failure: ``kind`` (``store``, ``broker``, ``storage`` or ``disk``: a metric
    label) and ``reason``, what a person reads."""

    kind: str
    reason: str


def infrastructure(exc: BaseException, output: str | None = None) -> Fault | None:
    """The fault ``exc`` is, or None when it is not the infrastructure's.

    ``output``: the job's output folder, so a full disk there reads "output disk full".
    """
    if isinstance(exc, redis.ConnectionError | redis.TimeoutError):
        return Fault("store", f"state store unreachable ({exc})")
    if isinstance(exc, kombu.exceptions.OperationalError):
        return Fault("broker", f"broker unreachable ({exc})")
    if isinstance(exc, sqlite3.OperationalError) and (exc.sqlite_errorname or "").startswith(_SQLITE):
        return Fault("store", f"state file unusable ({exc})")
    if isinstance(exc, RetryableError):
        return Fault("storage", f"storage failing ({exc})")
    if isinstance(exc, OSError) and exc.errno in _DISK:
        return Fault("disk", _disk_reason(exc, output))
    return None


def _disk_reason(exc: OSError, output: str | None) -> str:
    what = _DISK[exc.errno]
    path = exc.filename if isinstance(exc.filename, str) else None
    if path is not None and output is not None and _under(path, output):
        what = f"output {what}"
    where = f": {path}" if path else ""
    return f"{what} ({exc.strerror}{where})"


def _under(path: str, root: str) -> bool:
    root = os.path.abspath(root)
    return os.path.abspath(path) == root or os.path.abspath(path).startswith(root.rstrip(os.sep) + os.sep)

"""One error taxonomy for the whole product.

Every failure is either about one input (it becomes an ``error`` record and
the run goes on), retryable (timeouts, throttling, 5xx: retried with
backoff, bounded), or a configuration problem the user must fix (raised at
start, with a message that names the setting and the fix).
"""


class VisionfleetError(Exception):
    """Base of every error this product raises on purpose."""


class ConfigError(VisionfleetError):
    """A missing or invalid setting; the message says which and how to fix it."""


class InputError(VisionfleetError):
    """A permanent problem with one input: it gets an ``error`` record."""


class RetryableError(VisionfleetError):
    """A transient failure (throttling, 5xx, connection): worth retrying."""


class OverloadedError(RetryableError):
    """The online backlog is over its bound: fail fast, the caller retries later."""


class BrokerUnavailable(VisionfleetError):
    """The broker cannot be reached after bounded retries."""

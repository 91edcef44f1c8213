"""Servers the CLI talks to: a quick first look, and what to say when one is down.

Workers ride out a Redis restart (the store retries for about a minute);
a person at a terminal should hear within seconds that nothing answers.
"""
from visionfleet.broker.settings import BrokerSettings, redact
from visionfleet.checkpoints import StateStore, open_store
from visionfleet.pipeline.errors import VisionfleetError

CONNECT_TIMEOUT_S = 3


class Unreachable(VisionfleetError):
    """A server named in the settings does not answer."""


def reachable_store(settings: BrokerSettings) -> StateStore:
    """The job-state store, after one quick ping when it is a server."""
    if not settings.embedded and settings.state_url.startswith(("redis", "unix")):
        import redis

        try:
            redis.Redis.from_url(settings.state_url, socket_connect_timeout=CONNECT_TIMEOUT_S,
                                 socket_timeout=CONNECT_TIMEOUT_S).ping()
        except redis.RedisError as exc:
            raise Unreachable(_message("the job-state Redis", settings.state_url, exc)) from exc
    return open_store(settings.state_url, job_ttl_s=settings.job_ttl_s, namespace=settings.namespace)


def check_broker(app) -> None:
    """Fail before planning when the broker does not answer: a job whose shards cannot be sent stays stuck."""
    import kombu.exceptions

    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=CONNECT_TIMEOUT_S)
    except (kombu.exceptions.OperationalError, OSError) as exc:
        raise Unreachable(_message("the broker", app.conf.broker_url, exc)) from exc


def service_error(exc: BaseException, settings: BrokerSettings | None) -> str | None:
    """The one-line message for a broker or Redis that went away mid-command; None for other errors.
    ``settings``: what the command read (a command that read none reached no server of them)."""
    import kombu.exceptions
    import redis

    if settings is None:
        return None
    if isinstance(exc, (redis.ConnectionError, redis.TimeoutError)):
        return _message("Redis", settings.state_url, exc)
    if isinstance(exc, kombu.exceptions.OperationalError):
        return _message("the broker", settings.broker_url or "", exc)
    return None


def _message(what: str, url: str, exc: BaseException) -> str:
    return (f"cannot reach {what} at {redact(url)} ({exc}); is it running? "
            "Check VISIONFLEET_BROKER_URL / VISIONFLEET_STATE_URL, or unset VISIONFLEET_BROKER_URL "
            "to run embedded on this machine")

"""The client API for backend services: classify images through the fleet.

    from visionfleet import VisionClient
    client = VisionClient()                      # VISIONFLEET_BROKER_URL, read once, here
    record = client.classify("oss://bucket/upload/123.jpg", timeout=10)
    pending = client.submit("oss://bucket/upload/124.jpg")   # Celery AsyncResult
    records = client.classify_many([...], timeout=30)
    record = client.classify("oss://bucket/upload/125.jpg", model="/models/colors/model.onnx")

Any Celery client in any language can do the same by name: task
``visionfleet.classify``, queue ``online``, one argument (the URI) and,
optionally, the keyword ``model`` (a spec the workers allow), JSON.
"""
import logging
import time
from dataclasses import dataclass

import kombu.exceptions
import redis
from celery import Celery
from celery.exceptions import TimeoutError as CeleryTimeout
from celery.result import AsyncResult
from tenacity import RetryError, retry, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from visionfleet.broker.fleet import waiting
from visionfleet.broker.routes import CLASSIFY_TASK, SENT_AT_HEADER, queue_name
from visionfleet.broker.settings import BrokerSettings, redact
from visionfleet.pipeline.envvars import env_int
from visionfleet.pipeline.model_spec import check_model_spec
from visionfleet.pipeline.errors import BrokerUnavailable, OverloadedError, VisionfleetError
from visionfleet.pipeline.words import count
from visionfleet.broker.counters import Counters

log = logging.getLogger(__name__)

_CONNECTION_ERRORS = (kombu.exceptions.OperationalError, ConnectionError, OSError, redis.ConnectionError)


@dataclass(frozen=True)
class ClientSettings:
    """How the client guards the fleet: the online backlog bound and the broker connection attempts."""

    max_backlog: int = 1000
    connect_attempts: int = 5

    @classmethod
    def from_env(cls) -> "ClientSettings":
        return cls(max_backlog=env_int("VISIONFLEET_ONLINE_MAX_BACKLOG", 1000, minimum=0),
                   connect_attempts=env_int("VISIONFLEET_CONNECT_ATTEMPTS", 5, maximum=50))


class VisionClient:
    """Classify images through the fleet's ``online`` queue, from any backend service.

    Broker connections are retried with backoff, then fail with ``BrokerUnavailable``;
    new requests are refused fast with ``OverloadedError`` past the backlog bound.
    """

    def __init__(self, app: Celery | None = None, settings: ClientSettings | None = None,
                 broker: BrokerSettings | None = None) -> None:
        """Whatever is not given is read from the environment: a backend service's client is its own edge."""
        broker = broker or BrokerSettings.from_env()
        if app is None:
            from visionfleet.broker.celery_app import make_app

            app = make_app(broker)
        self.app = app
        self.settings = settings or ClientSettings.from_env()
        self.online_queue = queue_name("online", broker.namespace)
        state_url = broker.state_url
        shared = state_url.startswith(("redis", "unix"))
        self.metrics = Counters(redis.Redis.from_url(state_url, decode_responses=True) if shared else None,
                               broker.namespace)
        self._with_retries = retry(
            retry=retry_if_exception_type(_CONNECTION_ERRORS),
            stop=stop_after_attempt(self.settings.connect_attempts),
            wait=wait_random_exponential(multiplier=0.1, max=2),
        )

    def _call(self, fn, *args, **kwargs):
        try:
            return self._with_retries(fn)(*args, **kwargs)
        except RetryError as exc:
            cause = exc.last_attempt.exception()
            raise BrokerUnavailable(
                f"cannot reach the broker at {redact(str(self.app.conf.broker_url))} after "
                f"{count(self.settings.connect_attempts, 'try', 'tries')} ({cause}); check VISIONFLEET_BROKER_URL and that it is up"
            ) from None

    def backlog(self) -> int:
        """Online requests waiting in the queue (not yet taken by a worker)."""
        return self.queue_size(self.online_queue)

    def queue_size(self, queue: str) -> int:
        """Messages waiting in ``queue``."""
        return self._call(self._queue_size, queue)

    def _queue_size(self, queue: str) -> int:
        with self.app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1)
            return waiting(conn, queue)

    def submit(self, uri: str, model: str | None = None) -> AsyncResult:
        """Enqueue one image; fails fast with ``OverloadedError`` when the backlog is over its bound.

        ``model``: the model spec to label it with, one the online workers allow (``VISIONFLEET_MODELS``);
        none, each worker's own. A spec no worker could load fails here (``ConfigError``)."""
        if model is not None:
            check_model_spec(model)
        waiting = self.backlog()
        if waiting >= self.settings.max_backlog:
            self.metrics.count("online_rejected")
            log.warning("online request rejected: overloaded",
                        extra={"backlog": waiting, "max_backlog": self.settings.max_backlog})
            raise OverloadedError(
                f"overloaded: {count(waiting, 'online request')} waiting, over the limit of {self.settings.max_backlog} "
                "(VISIONFLEET_ONLINE_MAX_BACKLOG); retry later or add online workers"
            )
        kwargs = {} if model is None else {"model": model}  # the message of old, without one
        return self._call(self.app.send_task, CLASSIFY_TASK, args=[uri], kwargs=kwargs, queue=self.online_queue,
                          retry=False, headers={SENT_AT_HEADER: time.time()})

    def classify(self, uri: str, timeout: float = 30.0, model: str | None = None) -> dict:
        """The record for one image, waiting at most ``timeout`` seconds; ``model`` as in ``submit``."""
        return self.classify_many([uri], timeout=timeout, model=model)[0]

    def classify_many(self, uris: list[str], timeout: float = 30.0, model: str | None = None) -> list[dict]:
        """Records for many images, in order; they share the workers' batches of their model."""
        pending = [self.submit(uri, model) for uri in uris]
        deadline = time.monotonic() + timeout
        try:
            return [r.get(timeout=max(0.001, deadline - time.monotonic())) for r in pending]
        except CeleryTimeout:
            raise VisionfleetError(
                f"no answer within {timeout}s; are online workers running (visionfleet worker --queues online)?"
            ) from None

"""Where the fleet talks: broker, result backend and job-state store.

With ``VISIONFLEET_BROKER_URL`` unset the product runs embedded: kombu's
filesystem transport and a SQLite state file under ``VISIONFLEET_HOME``,
so a whole job runs on one machine with no server at all.
"""
import os
import re
from dataclasses import dataclass
from pathlib import Path

from visionfleet.broker.routes import DEFAULT_NAMESPACE
from visionfleet.pipeline.envvars import env_int, env_str, visionfleet_home
from visionfleet.pipeline.errors import ConfigError
from visionfleet.pipeline.redaction import mask_shapes

_REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
# Given by an embedded command to the workers it starts (in their environment, at spawn): the run's own
# queue folder, so messages left by another, interrupted run are never taken by this one.
EMBEDDED_RUN_ENV = "VISIONFLEET_EMBEDDED_RUN"
JOB_TTL_S = 7 * 24 * 3600  # an ended job's state; its output and durable checkpoints stay


@dataclass(frozen=True)
class BrokerSettings:
    """Read once per process, by its edge (the command, a worker's start), and passed down."""

    broker_url: str | None
    result_backend: str
    state_url: str
    home: Path
    redeliver_after_s: int = 300
    result_expires_s: int = 3600
    embedded_run: str = "default"
    job_ttl_s: int = JOB_TTL_S
    namespace: str = DEFAULT_NAMESPACE  # in every queue and Redis key name (broker/routes.py)

    @property
    def embedded(self) -> bool:
        return self.broker_url is None

    @property
    def broker_dir(self) -> Path:
        return self.home / "broker" / self.embedded_run

    @classmethod
    def from_env(cls) -> "BrokerSettings":
        namespace = _namespace()
        home = visionfleet_home()
        broker = env_str("VISIONFLEET_BROKER_URL")
        ttl = env_int("VISIONFLEET_JOB_TTL_S", JOB_TTL_S)
        if broker is None:
            return cls(None, f"file://{home / 'results'}", f"sqlite:///{home / 'state.db'}", home,
                       embedded_run=env_str(EMBEDDED_RUN_ENV) or "default", job_ttl_s=ttl, namespace=namespace)
        is_redis = broker.startswith(_REDIS_SCHEMES)
        if not (is_redis or broker.startswith(("amqp://", "amqps://", "pyamqp://"))):
            raise ConfigError(
                f"VISIONFLEET_BROKER_URL has an unsupported scheme ({broker.split(':', 1)[0]}); "
                "use redis://host:6379/0 or amqp://user:pass@host:5672//"
            )
        state = env_str("VISIONFLEET_STATE_URL") or (broker if is_redis else None)
        if state is None:
            raise ConfigError(
                "VISIONFLEET_STATE_URL is not set; with a RabbitMQ broker, job state needs Redis: "
                "set it to e.g. redis://redis:6379/0"
            )
        # Results go to the broker's Redis by default, so a plain Celery client
        # pointed at the broker gets its answer.
        backend = env_str("VISIONFLEET_RESULT_BACKEND") or (broker if is_redis else state)
        return cls(broker, backend, state, home, env_int("VISIONFLEET_REDELIVER_AFTER_S", 300, minimum=2),
                   env_int("VISIONFLEET_RESULT_EXPIRES_S", 3600, minimum=1), job_ttl_s=ttl, namespace=namespace)

    def prepare(self) -> None:
        """Create the embedded folders; kombu's filesystem transport needs them to exist."""
        if self.embedded:
            for folder in (self.broker_dir, self.home / "results"):
                os.makedirs(folder, exist_ok=True)


def _namespace() -> str:
    value = env_str("VISIONFLEET_NAMESPACE", DEFAULT_NAMESPACE)
    if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,31}", value):
        raise ConfigError(f"VISIONFLEET_NAMESPACE={value!r} is not a namespace; use up to 32 lowercase letters, "
                          "digits, '-' or '_', e.g. staging")
    return value


def redact(url: str) -> str:
    """A URL fit for logs: the password replaced, in the user part or the query."""
    return mask_shapes(url)

"""Structured logs: one JSON object per line, with the ``extra`` fields.

Secrets never reach a log: settings objects redact themselves, and broker
URLs are logged only through ``visionfleet.broker.settings.redact``.
"""
import json
import logging
import sys

from celery.signals import setup_logging

# Attributes every LogRecord has; anything else came in through ``extra``.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
            **{k: v for k, v in vars(record).items() if k not in _STANDARD},
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure(level: str | int = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


@setup_logging.connect
def _celery_logging(loglevel=None, **_) -> None:
    # Connecting this signal stops Celery from installing its own handlers.
    configure(loglevel or "INFO")

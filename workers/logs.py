"""Structured logs: one JSON object per line, with the ``extra`` fields.

Secrets never reach a log: settings objects redact themselves, broker URLs
are logged only through ``visionfleet.broker.settings.redact``, and every
record, ours or a library's, is scrubbed on its way out
(``visionfleet.pipeline.redaction``).
"""
import json
import logging
import sys

from celery.signals import setup_logging

from visionfleet.pipeline.redaction import Redact, scrub

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
        if record.exc_info or record.exc_text:
            entry["exc"] = record.exc_text or self.formatException(record.exc_info)
        return scrub(json.dumps(entry, default=str))  # the extras too, however deep


def configure(level: str | int = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(Redact())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.captureWarnings(True)  # a library's warning is a log record too: scrubbed like one


@setup_logging.connect
def _celery_logging(loglevel=None, **_) -> None:
    # Connecting this signal stops Celery from installing its own handlers.
    configure(loglevel or "INFO")

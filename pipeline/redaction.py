"""No secret in a log line, at any level, whoever logs it: libraries' DEBUG output included
(oss2 logs every request's headers and the string it signs; kombu, redis and Celery log URLs).

Two nets, applied to every record our handlers write (``logs.configure``) and to Python's
last-resort handler: the secrets this process was given (the OSS key secret and STS token, the
passwords in its broker, state and result URLs; raw, URL-quoted and JSON-escaped) are replaced
wherever they appear; and what has the shape of a credential (a URL's password, a ``password``,
``Signature`` or security-token field, an ``Authorization`` header) is masked even when its value
is not known here: a signature is made per request.
"""
import functools
import json
import logging
import os
import re
from urllib.parse import parse_qsl, quote, unquote, urlsplit

MASK = "***"
SECRET_VARS = ("OSS_ACCESS_KEY_SECRET", "OSS_SESSION_TOKEN")
URL_VARS = ("VISIONFLEET_BROKER_URL", "VISIONFLEET_STATE_URL", "VISIONFLEET_RESULT_BACKEND")
MIN_KNOWN = 4  # a shorter known value is masked by its shape only: replacing "pw" anywhere would garble lines

_QUOTE = r"\\?['\"]?"  # a key or value may be quoted in a repr, and its quotes escaped in JSON
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s/@:'\"]*:)[^\s/'\"]*@")  # to the last @, as URLs read
# A signature only as ``Signature=...``: "Make signature: string to be signed" is no credential.
_FIELD = re.compile(r"(?i)\b(password|passwd|x-oss-security-token|security[-_]?token|access_?key_?secret"
                    rf"|(?:x-oss-)?signature(?==))({_QUOTE}\s*[=:]\s*{_QUOTE})[^\s&'\",;}})\\]+")
_AUTHORIZATION = re.compile(rf"(?i)\b(authorization{_QUOTE}\s*[=:]\s*{_QUOTE})[^'\"\\\n]+")


def scrub(text: str) -> str:
    """``text`` with every secret masked: those this process knows, and whatever looks like one."""
    for secret in _known():
        text = text.replace(secret, MASK)
    return mask_shapes(text)


def mask_shapes(text: str) -> str:
    """``text`` with what has a credential's shape masked: e.g. a URL fit for a message, its password
    masked in the user part (``redis://:***@host``) or the query (``?password=***``)."""
    text = _USERINFO.sub(rf"\1{MASK}@", text)
    text = _FIELD.sub(rf"\1\2{MASK}", text)
    return _AUTHORIZATION.sub(rf"\1{MASK}", text)


class Redact(logging.Filter):
    """Masks secrets in a record's message, exception and ``extra`` strings, before any handler formats it."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            record.msg, record.args = scrub(record.getMessage()), None
        except Exception:  # arguments that do not fit the message: the message alone, never the arguments raw
            record.msg, record.args = scrub(str(record.msg)), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        for name in ("exc_text", "stack_info"):
            if getattr(record, name, None):
                setattr(record, name, scrub(getattr(record, name)))
        for name, value in vars(record).items():
            if isinstance(value, str) and name not in _PLAIN:
                setattr(record, name, scrub(value))
        return True


_PLAIN = frozenset({"name", "levelname", "pathname", "filename", "module", "funcName", "threadName",
                    "processName", "taskName", "msg", "exc_text", "stack_info"})


def protect_last_resort() -> None:
    """Python's own handler for records no handler takes (WARNING and up, unconfigured) redacts too."""
    if logging.lastResort is not None and not any(isinstance(f, Redact) for f in logging.lastResort.filters):
        logging.lastResort.addFilter(Redact())


def _known() -> tuple[str, ...]:
    return _known_from(tuple(os.environ.get(name, "") for name in SECRET_VARS + URL_VARS))


@functools.lru_cache(maxsize=8)
def _known_from(values: tuple[str, ...]) -> tuple[str, ...]:
    secrets = {v.strip() for v in values[:len(SECRET_VARS)] if v.strip()}
    for url in values[len(SECRET_VARS):]:
        secrets |= _url_passwords(url.strip())
    forms = {form for s in secrets for form in (s, unquote(s), quote(s, safe=""), json.dumps(s)[1:-1])}
    return tuple(sorted((f for f in forms if len(f) >= MIN_KNOWN), key=len, reverse=True))  # longest first


def _url_passwords(url: str) -> set[str]:
    try:
        parts = urlsplit(url)
        found = {parts.password} if parts.password else set()
    except ValueError:  # not a URL we can read: its settings class says so; nothing to learn here
        return set()
    return found | {v for k, v in parse_qsl(parts.query) if k.lower() == "password" and v}

"""Secrets out of every log line: URL passwords in each form, OSS key secrets, STS tokens and request
signatures, whoever logs them (a library's DEBUG line, a warning, an exception)."""
import io
import json
import logging
import subprocess
import sys

import pytest

from tests.helpers import REPO
from visionfleet.broker.settings import redact
from visionfleet.pipeline.redaction import Redact, scrub
from visionfleet.workers.logs import JsonFormatter

SECRET = 'k3y"Secret\\9'  # a quote and a backslash: JSON escapes them, the escaped form is masked too


@pytest.fixture
def secret_env(monkeypatch):
    monkeypatch.setenv("OSS_ACCESS_KEY_SECRET", SECRET)
    monkeypatch.setenv("OSS_SESSION_TOKEN", "sts.TOKEN/with+slash==")
    monkeypatch.setenv("VISIONFLEET_BROKER_URL", "amqp://fleet:amqp%40pass@rabbit:5672//")
    monkeypatch.setenv("VISIONFLEET_STATE_URL", "redis://state:6379/0?password=query-pass&db=2")
    monkeypatch.setenv("VISIONFLEET_RESULT_BACKEND", "redis://backend-user:backend-pass@redis:6379/1")


@pytest.mark.parametrize("url, shown", [
    ("redis://:pw-1@h:6379/0", "redis://:***@h:6379/0"),
    ("redis://user:pw-2@h/0", "redis://user:***@h/0"),
    ("rediss://:p%40w@h:6380/0?ssl_cert_reqs=required", "rediss://:***@h:6380/0?ssl_cert_reqs=required"),
    ("redis://h:6379/0?db=1&password=pw-3", "redis://h:6379/0?db=1&password=***"),
    ("unix:///run/redis.sock?password=pw-4", "unix:///run/redis.sock?password=***"),
    ("amqp://guest:guest@127.0.0.1:5672//", "amqp://guest:***@127.0.0.1:5672//"),
    ("redis://:p@ss@h:6379/0", "redis://:***@h:6379/0"),
    ("redis://h:6379/0", "redis://h:6379/0"),
])
def test_a_url_in_a_message_keeps_no_password(url, shown):
    assert redact(url) == shown


def test_library_debug_lines_keep_no_secret_known_or_not(secret_env):
    lines = [  # what oss2, kombu, redis and Celery print at DEBUG, with what this process knows
        "Send request, headers: {'Authorization': 'OSS AKID:c2lnbmF0dXJl', 'x-oss-security-token': 'tok'}",
        "Make signature: string to be signed = b'GET\\n\\nx-oss-security-token:tok\\n/b/k'",
        "authorization: OSS4-HMAC-SHA256 Credential=AKID/20261202/cn-hangzhou/oss/aliyun_v4_request,Signature=ab12",
        "GET /k?OSSAccessKeyId=AKID&Expires=9&Signature=c2ln%2B&security-token=tok",
        "connection kwargs {'host': 'h', 'password': 'pw-5', 'db': 0}",
        f"secret {SECRET} token sts.TOKEN/with+slash== quoted sts.TOKEN%2Fwith%2Bslash%3D%3D",
        "amqp login fleet amqp@pass; state query-pass; backend backend-pass",
    ]
    text = "\n".join(scrub(line) for line in lines)
    for secret in ("c2lnbmF0dXJl", "tok'", "tok\\n", "ab12", "c2ln", "tok\n", "pw-5", SECRET, "sts.TOKEN",
                   "amqp@pass", "query-pass", "backend-pass"):
        assert secret not in text, text
    assert "Make signature: string to be signed" in text and "OSSAccessKeyId=AKID" in text  # what is no secret stays


def test_every_record_our_handler_writes_is_scrubbed_extras_and_exceptions_too(secret_env):
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(Redact())
    log = logging.getLogger("tests.redaction")
    log.addHandler(handler)
    try:
        log.warning("connecting to %s", "redis://:pw-6@h:6379/0", extra={"nested": {"token": [SECRET]}})
        try:
            raise ValueError(f"bad key {SECRET}")
        except ValueError:
            log.exception("failed")
    finally:
        log.removeHandler(handler)
    first, second = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert first["event"] == "connecting to redis://:***@h:6379/0" and first["nested"] == {"token": ["***"]}
    assert "ValueError: bad key ***" in second["exc"] and SECRET not in stream.getvalue()
    assert json.dumps(SECRET)[1:-1] not in stream.getvalue()


def test_python_s_last_resort_handler_is_scrubbed_too(secret_env):
    """What a command logs with no handler configured (warnings and up) goes out scrubbed as well."""
    code = ("import logging; from visionfleet.pipeline.redaction import protect_last_resort as p; p(); p(); "
            "assert len(logging.lastResort.filters) == 1; "
            "logging.getLogger('x').warning('oss secret %s', __import__('os').environ['OSS_ACCESS_KEY_SECRET'])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert (result.returncode, result.stderr.strip()) == (0, "oss secret ***"), result.stderr

"""Alibaba Cloud OSS through oss2, with bounded retries (tenacity).

Which failures are worth retrying is decided in one place,
``is_retryable``: connection errors, throttling and 5xx are; 403 and 404
are not and become error records (inputs) or fail the run (outputs).
"""
import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

import oss2
from tenacity import retry, retry_if_exception, stop_after_attempt, wait_random_exponential

from visionfleet.pipeline.envvars import env_int, env_str
from visionfleet.pipeline.errors import ConfigError, InputError, RetryableError
from visionfleet.pipeline.storage.base import Entry, Storage, too_large

THROTTLING_CODES = frozenset({"SlowDown", "Throttling", "ServerBusy", "RequestTimeout", "QpsLimitExceeded"})
LIST_PAGE_SIZE = 1000


@dataclass(frozen=True)
class OssSettings:
    """Endpoint and credentials from the standard OSS variables."""

    endpoint: str
    access_key_id: str
    access_key_secret: str
    session_token: str | None = None
    region: str | None = None
    max_attempts: int = 6
    pool_size: int = 32

    @classmethod
    def from_env(cls) -> "OssSettings":
        return cls(
            endpoint=_required("OSS_ENDPOINT", "your region's endpoint, e.g. https://oss-cn-hangzhou.aliyuncs.com"),
            access_key_id=_required("OSS_ACCESS_KEY_ID", "your AccessKey ID (or an STS temporary key id)"),
            access_key_secret=_required("OSS_ACCESS_KEY_SECRET", "the secret of that AccessKey"),
            session_token=env_str("OSS_SESSION_TOKEN"),
            region=env_str("OSS_REGION"),
            max_attempts=env_int("VISIONFLEET_OSS_MAX_ATTEMPTS", 6, maximum=20),
            pool_size=env_int("VISIONFLEET_OSS_POOL_SIZE", 32, maximum=512),
        )

    def __repr__(self) -> str:  # never show the secret or token in logs or tracebacks
        return f"OssSettings(endpoint={self.endpoint!r}, access_key_id={self.access_key_id!r}, region={self.region!r})"


def _required(name: str, what: str) -> str:
    value = env_str(name)
    if value is None:
        raise ConfigError(f"{name} is not set; set it to {what}")
    return value


def parse_oss_uri(uri: str) -> tuple[str, str]:
    """``oss://bucket/key`` -> ``(bucket, key)``."""
    rest = uri.removeprefix("oss://")
    bucket, _, key = rest.partition("/")
    if not bucket:
        raise ConfigError(f"{uri!r} has no bucket; write it as oss://bucket/prefix/")
    return bucket, key


def is_retryable(exc: BaseException) -> bool:
    if not isinstance(exc, oss2.exceptions.OssError):
        return False
    # oss2 reports connection failures and timeouts as status -2 (RequestError).
    return exc.status < 0 or exc.status >= 500 or exc.status == 429 or exc.code in THROTTLING_CODES


def describe(exc: oss2.exceptions.OssError) -> str:
    """A short reason without request ids, headers or credentials."""
    if exc.status < 0:
        return "connection error"
    return f"{exc.status} {exc.code or 'error'}: {exc.message or ''}".strip().rstrip(":")


class OssStorage(Storage):
    def __init__(self, settings: OssSettings) -> None:
        self._settings = settings
        self._buckets: dict[str, oss2.Bucket] = {}
        self._lock = threading.Lock()
        self._retrying = retry(
            retry=retry_if_exception(is_retryable),
            stop=stop_after_attempt(settings.max_attempts),
            wait=wait_random_exponential(multiplier=0.1, max=10),
            reraise=True,
        )
        # oss2 sizes its HTTP pool from this global; fetch threads share it.
        oss2.defaults.connection_pool_size = settings.pool_size

    def _auth(self):
        s = self._settings
        if s.session_token:
            return oss2.StsAuth(s.access_key_id, s.access_key_secret, s.session_token,
                                auth_version=oss2.AUTH_VERSION_4 if s.region else oss2.AUTH_VERSION_1)
        if s.region:
            return oss2.AuthV4(s.access_key_id, s.access_key_secret)
        return oss2.Auth(s.access_key_id, s.access_key_secret)

    def bucket(self, name: str) -> oss2.Bucket:
        with self._lock:
            if name not in self._buckets:
                self._buckets[name] = oss2.Bucket(self._auth(), self._settings.endpoint, name,
                                                  region=self._settings.region)
            return self._buckets[name]

    def _call(self, fn, *args, **kwargs):
        try:
            return self._retrying(fn)(*args, **kwargs)
        except oss2.exceptions.OssError as exc:
            if is_retryable(exc):
                raise RetryableError(f"OSS still failing after {self._settings.max_attempts} tries: {describe(exc)}") from None
            raise

    def read(self, uri: str, *, max_bytes: int | None = None, nofollow: bool = False) -> bytes:
        bucket, key = parse_oss_uri(uri)
        try:
            return self._call(self._read, self.bucket(bucket), key, max_bytes, uri)
        except oss2.exceptions.OssError as exc:
            raise InputError(f"cannot read {uri}: {describe(exc)}") from None

    @staticmethod
    def _read(bucket: oss2.Bucket, key: str, max_bytes: int | None, uri: str) -> bytes:
        result = bucket.get_object(key)
        size = result.content_length
        if max_bytes is not None and size is not None and size > max_bytes:
            result.resp.response.close()
            raise InputError(too_large(uri, size, max_bytes))
        return result.read()

    def write(self, uri: str, data: bytes) -> None:
        bucket, key = parse_oss_uri(uri)
        # PutObject is atomic in OSS: an object is visible whole or not at all.
        self._call(self.bucket(bucket).put_object, key, data)

    def entries(self, prefix: str) -> Iterator[Entry]:
        bucket_name, key_prefix = parse_oss_uri(prefix)
        bucket = self.bucket(bucket_name)
        token = ""
        while True:
            page = self._call(bucket.list_objects_v2, prefix=key_prefix, continuation_token=token,
                              max_keys=LIST_PAGE_SIZE)
            for obj in page.object_list:
                if not obj.key.endswith("/"):  # folder placeholders are not objects
                    yield f"oss://{bucket_name}/{obj.key}", obj.etag or None
            if not page.is_truncated:
                return
            token = page.next_continuation_token

    def version(self, uri: str) -> str | None:
        bucket, key = parse_oss_uri(uri)
        try:
            return f"{bucket}/{key}@{self._call(self.bucket(bucket).head_object, key).etag}"
        except oss2.exceptions.OssError:
            return None  # the read that follows reports what is wrong

    def answers(self, uri: str) -> bool:
        bucket, key = parse_oss_uri(uri)
        try:
            self._call(self.bucket(bucket).list_objects_v2, prefix=key, max_keys=1)
        except RetryableError:
            return False
        except oss2.exceptions.OssError:
            pass  # a refusal is an answer
        return True

    @contextlib.contextmanager
    def open_stream(self, uri: str) -> Iterator[BinaryIO]:
        bucket, key = parse_oss_uri(uri)
        try:
            result = self._call(self.bucket(bucket).get_object, key)
        except oss2.exceptions.OssError as exc:
            raise ConfigError(f"cannot read {uri}: {describe(exc)}") from None
        try:
            yield result  # streams: a manifest of millions of lines is never held whole
        finally:
            result.resp.response.close()

    def exists(self, uri: str) -> bool:
        bucket, key = parse_oss_uri(uri)
        return self._call(self.bucket(bucket).object_exists, key)

    def delete(self, uri: str) -> None:
        bucket, key = parse_oss_uri(uri)
        self._call(self.bucket(bucket).delete_object, key)

    def check_access(self, uri: str) -> None:
        """Fail at start, with the fix, if the bucket or credentials are wrong."""
        bucket, key = parse_oss_uri(uri)
        try:
            self._call(self.bucket(bucket).list_objects_v2, prefix=key, max_keys=1)
        except oss2.exceptions.OssError as exc:
            raise ConfigError(_access_hint(uri, exc)) from None
        except RetryableError as exc:
            raise ConfigError(f"cannot reach OSS at {self._settings.endpoint} ({exc}); check OSS_ENDPOINT") from None


def _access_hint(uri: str, exc: oss2.exceptions.OssError) -> str:
    if exc.code == "NoSuchBucket":
        return f"bucket of {uri} does not exist; create it or fix the URI"
    if exc.code in ("InvalidAccessKeyId", "SignatureDoesNotMatch"):
        return f"OSS rejected the credentials ({exc.code}); check OSS_ACCESS_KEY_ID and OSS_ACCESS_KEY_SECRET"
    if exc.status == 403:
        return f"access denied to {uri} ({exc.code}); grant this AccessKey oss:ListObjects/GetObject/PutObject there"
    return f"cannot access {uri}: {describe(exc)}"

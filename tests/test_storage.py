"""Storage contract on both backends: a local folder and OSS over real HTTP."""
import oss2
import pytest

from visionfleet.pipeline.errors import ConfigError, InputError, RetryableError
from visionfleet.pipeline.location import Location
from visionfleet.pipeline.storage.local import LocalStorage
from visionfleet.pipeline.storage.oss import OssSettings, OssStorage


def oss_storage(server, **overrides) -> OssStorage:
    settings = dict(endpoint=server.endpoint, access_key_id=server.access_key_id,
                    access_key_secret=server.access_key_secret, max_attempts=3)
    return OssStorage(OssSettings(**{**settings, **overrides}))


def _under(root: str, *parts: str) -> str:
    return str(Location.parse(root).child(*parts))


@pytest.fixture(params=["local", "oss"])
def backend(request, tmp_path):
    """(storage, root URI) for each backend."""
    if request.param == "local":
        return LocalStorage(), str(tmp_path / "root")
    bucket = request.getfixturevalue("bucket")
    return oss_storage(request.getfixturevalue("oss_server")), f"oss://{bucket.bucket_name}/root"


def test_write_read_exists_delete(backend):
    storage, root = backend
    uri = _under(root, "a", "b.bin")
    assert not storage.exists(uri)
    storage.write(uri, b"\x00payload")
    assert storage.exists(uri)
    assert storage.read(uri) == b"\x00payload"
    storage.delete(uri)
    storage.delete(uri)  # already gone: fine
    assert not storage.exists(uri)


def test_missing_object_is_an_input_error(backend):
    storage, root = backend
    with pytest.raises(InputError):
        storage.read(_under(root, "nope.jpg"))


def test_too_large_is_an_input_error_naming_the_setting(backend):
    storage, root = backend
    uri = _under(root, "big.bin")
    storage.write(uri, b"x" * 100)
    with pytest.raises(InputError, match="VISIONFLEET_MAX_FILE_BYTES"):
        storage.read(uri, max_bytes=99)
    assert storage.read(uri, max_bytes=100) == b"x" * 100


def test_listing_streams_every_object_once(backend, monkeypatch):
    storage, root = backend
    monkeypatch.setattr("visionfleet.pipeline.storage.oss.LIST_PAGE_SIZE", 7)  # several pages
    names = [f"d{i % 3}/img{i:03d}.jpg" for i in range(25)]
    for name in names:
        storage.write(_under(root, name), b"x")
    listed = list(storage.list(root))
    assert len(listed) == 25
    assert sorted(listed) == sorted(_under(root, n) for n in names)


def test_iter_lines_streams_a_manifest(backend):
    storage, root = backend
    uri = _under(root, "list.txt")
    storage.write(uri, b"one\ntwo\n\nthree")
    assert [line.strip() for line in storage.iter_lines(uri, max_chars=100)] == ["one", "two", "", "three"]


def test_throttling_and_5xx_are_retried(oss_server, bucket):
    storage = oss_storage(oss_server)
    uri = f"oss://{bucket.bucket_name}/flaky.jpg"
    storage.write(uri, b"data")
    for status in (503, 429, 500):
        oss_server.inject_fault(f"/{bucket.bucket_name}/flaky.jpg", status, count=2)
        assert storage.read(uri) == b"data"
    oss_server.inject_fault(f"/{bucket.bucket_name}/flaky.jpg", 0, count=1)  # dropped connection
    assert storage.read(uri) == b"data"


def test_retries_are_bounded(oss_server, bucket):
    storage = oss_storage(oss_server, max_attempts=2)
    uri = f"oss://{bucket.bucket_name}/down.jpg"
    storage.write(uri, b"data")
    oss_server.inject_fault(f"/{bucket.bucket_name}/down.jpg", 503, count=5)
    try:
        with pytest.raises(RetryableError, match="after 2 tries"):
            storage.read(uri)
    finally:
        oss_server.clear_faults()


def test_forbidden_is_not_retried(oss_server, bucket):
    storage = oss_storage(oss_server, max_attempts=5)
    uri = f"oss://{bucket.bucket_name}/secret.jpg"
    storage.write(uri, b"data")
    oss_server.inject_fault(f"/{bucket.bucket_name}/secret.jpg", 403, count=1, code="AccessDenied")
    with pytest.raises(InputError, match="403 AccessDenied"):
        storage.read(uri)
    assert storage.read(uri) == b"data"  # exactly one request was spent on the 403


def test_bad_credentials_fail_at_start_with_the_fix(oss_server, bucket):
    storage = oss_storage(oss_server, access_key_id="wrong-id")
    with pytest.raises(ConfigError, match="OSS_ACCESS_KEY_ID"):
        storage.check_access(f"oss://{bucket.bucket_name}/in/")


def test_missing_bucket_fails_at_start(oss_server):
    with pytest.raises(ConfigError, match="does not exist"):
        oss_storage(oss_server).check_access("oss://no-such-bucket-here/in/")


def test_sts_and_v4_signing(oss_server, bucket):
    for extra in ({"session_token": "sts-token"}, {"region": "cn-hangzhou"}):
        storage = oss_storage(oss_server, **extra)
        uri = f"oss://{bucket.bucket_name}/signed.bin"
        storage.write(uri, b"v")
        assert storage.read(uri) == b"v"


def test_settings_name_the_missing_variable(monkeypatch):
    for name in ("OSS_ENDPOINT", "OSS_ACCESS_KEY_ID", "OSS_ACCESS_KEY_SECRET"):
        monkeypatch.setenv(name, "x")
    monkeypatch.delenv("OSS_ENDPOINT")
    with pytest.raises(ConfigError, match="OSS_ENDPOINT is not set; set it to your region's endpoint"):
        OssSettings.from_env()


def test_settings_never_show_the_secret():
    settings = OssSettings("http://e", "id", "top-secret", session_token="tok-secret")
    assert "secret" not in repr(settings) and "tok" not in repr(settings)


def test_oss2_exceptions_do_not_leak_as_such(oss_server, bucket):
    with pytest.raises(InputError) as info:
        oss_storage(oss_server).read(f"oss://{bucket.bucket_name}/missing.jpg")
    assert "NoSuchKey" in str(info.value)
    assert not isinstance(info.value, oss2.exceptions.OssError)

"""The local OSS server (tests/oss_server.py) against the real oss2 SDK over HTTP.

One server process serves the whole session; each test gets a fresh bucket.
"""
import os
import socket
import urllib.request

import oss2
import pytest
from oss2.exceptions import AccessDenied, NoSuchBucket, NoSuchKey, RequestError, ServerError
from oss2.models import PartInfo

from tests.oss_server import start_oss_server

PART = 100 * 1024  # OSS's (and so the server's) minimum size of all parts but the last


@pytest.fixture
def server(oss_server):
    """The session's server (conftest); ``bucket`` comes from there too."""
    return oss_server


@pytest.fixture
def auth(server):
    return oss2.Auth(server.access_key_id, server.access_key_secret)


def _keys(iterator):
    return [info.key for info in iterator]


def test_put_get_head_delete_round_trip(bucket):
    data = os.urandom(3000)
    put = bucket.put_object("images/a.jpg", data)
    assert put.status == 200 and put.request_id

    got = bucket.get_object("images/a.jpg")
    assert got.content_length == len(data)
    assert b"".join(got) == data  # streamed in chunks
    assert bucket.get_object("images/a.jpg", byte_range=(10, 19)).read() == data[10:20]
    head = bucket.head_object("images/a.jpg")
    assert head.content_length == len(data)
    assert head.etag == put.etag
    assert head.object_type == "Normal"
    assert bucket.object_exists("images/a.jpg")

    bucket.delete_object("images/a.jpg")
    assert not bucket.object_exists("images/a.jpg")
    bucket.delete_object("images/a.jpg")  # deleting what is gone is no error, as on OSS


def test_object_bytes_are_never_rewritten(bucket):
    # The server rewrites S3 XML replies; object content that looks like one must pass untouched.
    data = b'<?xml version="1.0"?><ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"/>'
    bucket.put_object("labels/reply.xml", data, headers={"Content-Type": "application/xml"})
    assert bucket.get_object("labels/reply.xml").read() == data


def test_odd_key_names_round_trip_and_list(bucket):
    keys = ["odd/a b+c%20.jpg", "odd/ünïcødé.png", "odd/x?y#z&.gif"]
    for key in keys:
        bucket.put_object(key, key.encode())
    assert [bucket.get_object(key).read() for key in keys] == [key.encode() for key in keys]
    assert _keys(oss2.ObjectIteratorV2(bucket, prefix="odd/")) == sorted(keys)
    assert _keys(oss2.ObjectIterator(bucket, prefix="odd/", max_keys=2)) == sorted(keys)


def test_user_metadata_round_trip(bucket):
    bucket.put_object("meta.jpg", b"x", headers={"x-oss-meta-foo": "bar", "Content-Type": "image/jpeg"})
    head = bucket.head_object("meta.jpg")
    assert head.headers["x-oss-meta-foo"] == "bar"
    assert head.content_type == "image/jpeg"
    meta = bucket.get_object_meta("meta.jpg")
    assert meta.headers["x-oss-meta-foo"] == "bar"
    assert meta.content_length == 1
    assert bucket.get_object("meta.jpg").headers["x-oss-meta-foo"] == "bar"


@pytest.fixture
def tree(bucket):
    """25 files and 3 "folders" under p/, and one key outside it."""
    keys = ["p/k%02d.jpg" % i for i in range(25)] + ["p/d%d/x.jpg" % i for i in range(3)]
    for key in keys + ["q/outside.jpg"]:
        bucket.put_object(key, b"x")
    return sorted(keys)


def test_list_v2_pages_return_every_key_once_in_order(bucket, tree):
    listed = list(oss2.ObjectIteratorV2(bucket, prefix="p/", max_keys=10))
    assert [info.key for info in listed] == tree
    assert all(info.size == 1 and info.type == "Normal" and info.etag for info in listed)
    assert _keys(oss2.ObjectIteratorV2(bucket, prefix="p/", start_after="p/k20.jpg")) == tree[-4:]


def test_list_v2_with_delimiter_returns_prefixes(bucket, tree):
    listed = list(oss2.ObjectIteratorV2(bucket, prefix="p/", delimiter="/", max_keys=10))
    assert [info.key for info in listed if info.is_prefix()] == ["p/d0/", "p/d1/", "p/d2/"]
    assert [info.key for info in listed if not info.is_prefix()] == tree[3:]
    assert _keys(oss2.ObjectIteratorV2(bucket, delimiter="/")) == ["p/", "q/"]


def test_list_v1_pages_with_and_without_delimiter(bucket, tree):
    assert _keys(oss2.ObjectIterator(bucket, prefix="p/", max_keys=10)) == tree
    listed = _keys(oss2.ObjectIterator(bucket, prefix="p/", delimiter="/", max_keys=7))
    assert listed == ["p/d0/", "p/d1/", "p/d2/"] + tree[3:]
    assert _keys(oss2.ObjectIterator(bucket, prefix="p/", marker="p/k20.jpg")) == tree[-4:]


def test_copy_object(bucket):
    bucket.put_object("src.jpg", b"original", headers={"x-oss-meta-camera": "7"})
    bucket.copy_object(bucket.bucket_name, "src.jpg", "dst/copy.jpg")
    assert bucket.get_object("dst/copy.jpg").read() == b"original"
    assert bucket.head_object("dst/copy.jpg").headers["x-oss-meta-camera"] == "7"


def test_batch_delete_objects(bucket):
    for key in ("a", "b", "c"):
        bucket.put_object(key, b"x")
    result = bucket.batch_delete_objects(["a", "b", "never-existed"])
    assert sorted(result.deleted_keys) == ["a", "b", "never-existed"]
    assert _keys(oss2.ObjectIteratorV2(bucket)) == ["c"]


def test_multipart_upload_concatenates_parts(bucket):
    first, second = os.urandom(PART), b"tail"
    upload_id = bucket.init_multipart_upload("big.bin").upload_id
    parts = [PartInfo(1, bucket.upload_part("big.bin", upload_id, 1, first).etag),
             PartInfo(2, bucket.upload_part("big.bin", upload_id, 2, second).etag)]
    assert [upload.key for upload in bucket.list_multipart_uploads().upload_list] == ["big.bin"]
    assert [(part.part_number, part.size) for part in bucket.list_parts("big.bin", upload_id).parts] == [
        (1, PART), (2, len(second))]

    bucket.complete_multipart_upload("big.bin", upload_id, parts)
    assert bucket.get_object("big.bin").read() == first + second
    assert bucket.head_object("big.bin").object_type == "Multipart"


def test_multipart_parts_below_the_oss_minimum_are_refused(bucket):
    upload_id = bucket.init_multipart_upload("small.bin").upload_id
    parts = [PartInfo(n, bucket.upload_part("small.bin", upload_id, n, b"x" * 10).etag) for n in (1, 2)]
    with pytest.raises(ServerError) as raised:
        bucket.complete_multipart_upload("small.bin", upload_id, parts)
    assert (raised.value.status, raised.value.code) == (400, "EntityTooSmall")


def test_resumable_upload_and_download(bucket, tmp_path):
    source = tmp_path / "source.bin"
    source.write_bytes(os.urandom(3 * PART + 123))
    store = oss2.ResumableStore(root=str(tmp_path))  # not the default ~/.py-oss-upload
    oss2.resumable_upload(bucket, "resumable.bin", str(source), store=store,
                          multipart_threshold=PART, part_size=PART, num_threads=2)
    assert bucket.head_object("resumable.bin").object_type == "Multipart"
    assert bucket.get_object("resumable.bin").read() == source.read_bytes()

    target = tmp_path / "target.bin"
    oss2.resumable_download(bucket, "resumable.bin", str(target),
                            store=oss2.ResumableDownloadStore(root=str(tmp_path)),
                            multiget_threshold=PART, part_size=PART, num_threads=2)
    assert target.read_bytes() == source.read_bytes()


def test_missing_key_raises_no_such_key(bucket):
    with pytest.raises(NoSuchKey):
        bucket.get_object("missing.jpg")
    with pytest.raises(NoSuchKey):  # HEAD has no body: the error rides in x-oss-err
        bucket.head_object("missing.jpg")
    assert not bucket.object_exists("missing.jpg")


def test_missing_bucket_raises_no_such_bucket(server, auth):
    gone = oss2.Bucket(auth, server.endpoint, "vf-test-never-created")
    with pytest.raises(NoSuchBucket):
        gone.get_object("a.jpg")
    with pytest.raises(NoSuchBucket):
        gone.object_exists("a.jpg")
    with pytest.raises(NoSuchBucket):
        gone.put_object("a.jpg", b"x")
    with pytest.raises(NoSuchBucket):
        gone.list_objects_v2(prefix="a/", continuation_token="", max_keys=1)


def test_wrong_access_key_id_is_refused(server, bucket):
    bucket.put_object("secret.jpg", b"x")
    stranger = oss2.Bucket(oss2.Auth("someone-else", "whatever"), server.endpoint, bucket.bucket_name)
    with pytest.raises(ServerError) as raised:
        stranger.get_object("secret.jpg")
    assert (raised.value.status, raised.value.code) == (403, "InvalidAccessKeyId")
    with pytest.raises(ServerError) as raised:
        stranger.head_object("secret.jpg")
    assert (raised.value.status, raised.value.code) == (403, "InvalidAccessKeyId")


def test_anonymous_requests_are_refused(server, bucket):
    bucket.put_object("secret.jpg", b"x")
    with pytest.raises(AccessDenied):
        oss2.Bucket(oss2.AnonymousAuth(), server.endpoint, bucket.bucket_name).get_object("secret.jpg")


@pytest.mark.parametrize("make_auth", [
    lambda key_id, secret: oss2.AuthV2(key_id, secret),
    lambda key_id, secret: oss2.AuthV4(key_id, secret),
    lambda key_id, secret: oss2.StsAuth(key_id, secret, "security-token"),
    lambda key_id, secret: oss2.StsAuth(key_id, secret, "security-token", auth_version=oss2.AUTH_VERSION_4),
], ids=["v2", "v4", "sts", "sts-v4"])
def test_other_auth_forms(server, bucket, make_auth):
    other = oss2.Bucket(make_auth(server.access_key_id, server.access_key_secret), server.endpoint,
                        bucket.bucket_name, region="cn-hangzhou")
    other.put_object("auth.jpg", b"signed", headers={"x-oss-meta-by": "other"})
    assert other.get_object("auth.jpg").read() == b"signed"
    assert other.head_object("auth.jpg").headers["x-oss-meta-by"] == "other"
    assert _keys(oss2.ObjectIteratorV2(other)) == ["auth.jpg"]


@pytest.mark.parametrize("auth_class", [oss2.Auth, oss2.AuthV4])
def test_signed_urls(server, bucket, auth_class):
    bucket.put_object("shared.jpg", b"shared")
    signer = oss2.Bucket(auth_class(server.access_key_id, server.access_key_secret), server.endpoint,
                         bucket.bucket_name, region="cn-hangzhou")
    with urllib.request.urlopen(signer.sign_url("GET", "shared.jpg", 60), timeout=10) as reply:
        assert reply.read() == b"shared"


def test_list_buckets(server, auth, bucket):
    names = [info.name for info in oss2.BucketIterator(oss2.Service(auth, server.endpoint))]
    assert bucket.bucket_name in names


@pytest.mark.parametrize("status,code", [(503, "ServiceUnavailable"), (429, "Throttling"), (429, None)])
def test_injected_http_faults_fail_the_next_requests(server, bucket, status, code):
    bucket.put_object("flaky.jpg", b"x")
    server.inject_fault("flaky.jpg", status, count=2, code=code)
    for _ in range(2):
        with pytest.raises(ServerError) as raised:
            bucket.get_object("flaky.jpg")
        assert raised.value.status == status
        assert raised.value.code == (code or "Throttling")
        assert raised.value.request_id
    assert bucket.get_object("flaky.jpg").read() == b"x"


def test_injected_faults_only_hit_matching_paths_and_can_be_cleared(server, bucket):
    bucket.put_object("steady.jpg", b"s")
    bucket.put_object("flaky.jpg", b"f")
    server.inject_fault("flaky.jpg", 503, count=5, code="SlowDown")
    assert bucket.get_object("steady.jpg").read() == b"s"
    with pytest.raises(ServerError) as raised:
        bucket.head_object("flaky.jpg")  # HEAD faults carry their code too
    assert (raised.value.status, raised.value.code) == (503, "SlowDown")
    server.clear_faults()
    assert bucket.get_object("flaky.jpg").read() == b"f"


def test_injected_connection_drop_raises_request_error(server, bucket):
    bucket.put_object("dropped.jpg", b"x")
    server.inject_fault("dropped.jpg", 0, count=1)
    with pytest.raises(RequestError):
        bucket.get_object("dropped.jpg")
    assert bucket.get_object("dropped.jpg").read() == b"x"


@pytest.mark.slow
def test_stop_ends_the_process_and_frees_the_port():
    with start_oss_server() as extra:
        assert extra.is_ready()
    assert extra.process.poll() is not None
    with pytest.raises(OSError):
        socket.create_connection((extra.host, extra.port), timeout=1).close()

"""Sources stream URIs: folders (images only by default), manifests (plain or gzip'd),
OSS prefixes and OSS inventories, filtered by suffix and by include/exclude globs."""
import gzip
import hashlib
import json
from urllib.parse import quote

import pytest

from tests.helpers import visionfleet
from visionfleet.broker.planner import chunks
from visionfleet.pipeline.errors import ConfigError
from visionfleet.pipeline.sources import iter_source


def test_folder_lists_images_only_unless_asked(tmp_path):
    for name in ("b.JPG", "a.png", "notes.txt", "sub/c.webp", ".hidden.jpg"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    names = [u.rsplit("/", 1)[1] for u in iter_source(str(tmp_path))]
    assert names == ["a.png", "b.JPG", "c.webp"]
    assert len(list(iter_source(str(tmp_path), all_files=True))) == 4


def test_manifest_paths_are_relative_to_the_manifest(tmp_path):
    manifest = tmp_path / "list.txt"
    manifest.write_text("# comment\nimgs/a.jpg\n\n/abs/b.jpg\noss://bucket/c.jpg\n")
    assert list(iter_source(str(manifest))) == [str(tmp_path / "imgs/a.jpg"), "/abs/b.jpg", "oss://bucket/c.jpg"]


def test_oss_prefix_and_manifest(bucket, oss_settings):
    for i in range(5):
        bucket.put_object(f"p/{i}.jpg", b"x")
    bucket.put_object("p/readme.md", b"x")
    bucket.put_object("lists/m.txt", b"oss://b/1.jpg\noss://b/2.jpg")
    assert len(list(iter_source(f"oss://{bucket.bucket_name}/p/"))) == 5
    assert list(iter_source(f"oss://{bucket.bucket_name}/lists/m.txt")) == ["oss://b/1.jpg", "oss://b/2.jpg"]


def test_missing_source_names_the_fix(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        list(iter_source(str(tmp_path / "nope")))


def test_chunks_stream_without_holding_the_listing():
    consumed = []

    def source():
        for i in range(10):
            consumed.append(i)
            yield str(i)

    stream = chunks(source(), 4)
    assert next(stream) == ["0", "1", "2", "3"]
    assert len(consumed) == 4  # nothing read beyond the first shard
    assert [len(c) for c in stream] == [4, 2]


def test_gzipped_manifests_local_and_on_oss(tmp_path, bucket, oss_settings):
    (tmp_path / "list.txt.gz").write_bytes(gzip.compress(b"a.jpg\nsub/b.png\nnotes.md\n"))
    assert list(iter_source(str(tmp_path / "list.txt.gz"))) == [str(tmp_path / "a.jpg"), str(tmp_path / "sub/b.png")]
    bucket.put_object("lists/m.csv.gz", gzip.compress(b"oss://b/1.jpg\noss://b/2.jpg\n"))
    assert list(iter_source(f"oss://{bucket.bucket_name}/lists/m.csv.gz")) == ["oss://b/1.jpg", "oss://b/2.jpg"]


def test_include_and_exclude_globs_apply_to_the_key(tmp_path):
    for name in ("2019/a.jpg", "2019/raw/b.jpg", "2020/c.jpg"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    names = lambda **kw: sorted(u.removeprefix(str(tmp_path) + "/") for u in iter_source(str(tmp_path), **kw))
    assert names(include=("*/2019/*",)) == ["2019/a.jpg", "2019/raw/b.jpg"]
    assert names(include=("*/2019/*",), exclude=("*/raw/*",)) == ["2019/a.jpg"]
    assert names(exclude=("*.jpg",)) == []


def inventory(bucket, rows: list[tuple[str, str]], *, md5: str | None = None, files: int = 1) -> str:
    """An OSS inventory run in ``bucket``: ``rows`` of (bucket, key) in gzip'd CSV, and its manifest.json."""
    body = gzip.compress("".join(f'"{b}","{quote(k)}","123","Standard"\n' for b, k in rows).encode())
    bucket.put_object("inv/data/part-0.csv.gz", body)
    entry = {"key": "inv/data/part-0.csv.gz", "MD5checksum": md5 or hashlib.md5(body).hexdigest().upper(),
             "size": len(body)}
    manifest = {"fileFormat": "CSV", "fileSchema": "Bucket, Key, Size, StorageClass", "sourceBucket": "src",
                "destinationBucket": bucket.bucket_name, "files": [entry] * files, "version": "2019-09-01"}
    bucket.put_object("inv/manifest.json", json.dumps(manifest).encode())
    return f"oss://{bucket.bucket_name}/inv/manifest.json"


def test_an_oss_inventory_is_read_with_its_keys_decoded_and_checked(bucket, oss_settings):
    keys = ["photos/my cat.jpg", "photos/猫 の写真.png", "photos/notes.txt", "photos/100%.jpeg"]
    source = inventory(bucket, [("src", k) for k in keys])
    assert list(iter_source(source)) == ["oss://src/photos/my cat.jpg", "oss://src/photos/猫 の写真.png",
                                         "oss://src/photos/100%.jpeg"]
    assert list(iter_source(inventory(bucket, [], files=0))) == []
    bad = inventory(bucket, [("src", k) for k in keys], md5="0" * 32)
    with pytest.raises(ConfigError, match="MD5 .* does not match the manifest's 000"):
        list(iter_source(bad))


@pytest.mark.slow
def test_relabel_refuses_an_empty_inventory_and_a_damaged_one(bucket, oss_settings, fleet_env):
    src_out = ["-o", f"oss://{bucket.bucket_name}/out/"]
    result = visionfleet("relabel", inventory(bucket, [], files=0), *src_out, env=fleet_env)
    assert result.returncode == 2 and "matched no images" in result.stderr, result.stderr
    result = visionfleet("relabel", inventory(bucket, [("src", "a.jpg")], md5="f" * 32), *src_out, env=fleet_env)
    assert result.returncode == 2 and "does not match the manifest's" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    typo = visionfleet("relabel", f"oss://{bucket.bucket_name}/invv/manifest.json", *src_out, env=fleet_env)
    assert typo.returncode == 2 and "cannot read inventory" in typo.stderr and "Traceback" not in typo.stderr, \
        typo.stderr

"""Sources stream URIs: folders (images only by default), manifests, OSS prefixes."""
import pytest

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

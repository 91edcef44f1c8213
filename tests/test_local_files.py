"""Local files as a user sees them: modes, special files, symlinks, relative paths."""
import os
import stat
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.helpers import embedded_env, visionfleet
from visionfleet.pipeline.errors import InputError
from visionfleet.pipeline.storage.local import LocalStorage


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600)])
def test_written_files_follow_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        LocalStorage().write(str(tmp_path / "out" / "part.jsonl"), b"{}\n")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "out" / "part.jsonl").stat().st_mode) == mode
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["part.jsonl"]  # no temp file left


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path):
    os.mkfifo(tmp_path / "pipe.jpg")
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(LocalStorage().read, str(tmp_path / "pipe.jpg"))
        with pytest.raises(InputError, match="not a regular file"):
            future.result(timeout=10)


def test_a_directory_named_like_an_image_is_refused(tmp_path):
    (tmp_path / "dir.jpg").mkdir()
    with pytest.raises(InputError, match="is a directory"):
        LocalStorage().read(str(tmp_path / "dir.jpg"))


def test_a_symlink_is_listed_as_the_link(tmp_path):
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "real.jpg").write_bytes(b"x")
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "link.jpg").symlink_to(tmp_path / "store" / "real.jpg")
    assert list(LocalStorage().list(str(tmp_path / "in"))) == [str(tmp_path / "in" / "link.jpg")]


@pytest.mark.slow
def test_embedded_job_over_a_fifo_and_a_link_ends_with_their_records(tmp_path, photos):
    os.mkfifo(photos / "pipe.jpg")
    (photos / "link.png").symlink_to(photos / "coffee.png")
    env = embedded_env(tmp_path)
    result = visionfleet("relabel", str(photos), "--output", str(tmp_path / "labels"), "--wait",
                         env=env, cwd=tmp_path, timeout=240)
    assert result.returncode == 0, result.stderr
    root = tmp_path / "labels" / result.stdout.strip().splitlines()[-1]
    assert stat.S_IMODE((root / "_SUCCESS.json").stat().st_mode) == 0o644 & ~_umask()
    records = {r["uri"]: r for part in root.glob("part-*.jsonl") for r in map(_json, part.read_text().splitlines())}
    assert "not a regular file" in records[str(photos / "pipe.jpg")]["error"]
    assert records[str(photos / "link.png")]["labels"][0]["class_id"] in (967, 968)


@pytest.mark.slow
def test_classify_reads_a_relative_path_where_it_was_typed(tmp_path, photos):
    result = visionfleet("classify", "chelsea.png", env=embedded_env(tmp_path), cwd=photos)
    assert result.returncode == 0, result.stderr
    record = _json(result.stdout)
    assert record["uri"] == str(photos / "chelsea.png") and record["status"] == "ok"


@pytest.mark.slow
def test_version():
    result = visionfleet("--version", env=dict(os.environ))
    assert result.returncode == 0 and result.stdout.startswith("visionfleet, version 0.1.0")


def _json(line: str) -> dict:
    import json

    return json.loads(line)


def _umask() -> int:
    old = os.umask(0)
    os.umask(old)
    return old

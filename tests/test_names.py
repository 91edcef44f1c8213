"""Any name a file system or OSS allows round-trips: through the plan, the workers and the records."""
import json
import os

import pytest

from tests.helpers import embedded_env, visionfleet
from tests.photos import distinct_jpegs
from visionfleet.pipeline import shard_lists
from visionfleet.pipeline.records import error_record
from visionfleet.pipeline.sink.jsonl import to_jsonl
from visionfleet.pipeline.sources import iter_source

# Each breaks a list of bare lines read back with str.splitlines(); the last is not UTF-8 (os.fsdecode).
ODD = ["new\nline.jpg", "form\x0cfeed.jpg", "weird\u2028name.jpg", "tab\there.jpg", "cr\rret.jpg",
       "nel\x85.jpg", "vt\x0b.jpg", "para\u2029.jpg", " spaced .jpg", os.fsdecode(b"latin1-\xe9t\xe9.jpg")]


def test_a_shard_list_gives_back_every_name_and_no_name_adds_a_line():
    entries = [(f"/in/{name}", f"12-{i}") for i, name in enumerate(ODD)] + [("oss://b/k with space.jpg", None),
                                                                           ("oss://b/猫.png", '"ETAG\n"')]
    data = shard_lists.encode(entries)
    assert data.count(b"\n") == len(entries)  # one line per URI, whatever the name (or fingerprint) holds
    assert shard_lists.decode(data) == entries
    with pytest.raises(ValueError, match=r"one \[URI, fingerprint\] JSON array per line"):
        shard_lists.decode(b'["/in/a.jpg", null]\n"/in/b.jpg"\n')


def test_records_of_names_that_are_not_utf8_stay_valid_utf8_and_round_trip():
    records = [error_record(f"/in/{name}", "cannot decode image") for name in ODD]
    lines = to_jsonl(records).decode("utf-8").split("\n")[:-1]  # strict UTF-8: no lone surrogate written
    assert [json.loads(line)["uri"] for line in lines] == [r["uri"] for r in records]
    assert os.fsencode(json.loads(lines[-1])["uri"]) == b"/in/latin1-\xe9t\xe9.jpg"
    assert "猫" in to_jsonl([error_record("/in/猫.jpg", "x")]).decode()  # readable names stay readable


def test_error_records_are_bounded():
    record = error_record("oss://b/" + "k" * 20_000_000, "URI of 20000008 bytes, over the bound of 4096")
    assert len(record["uri"]) < 5000 and record["uri"].endswith("(19995912 more characters)")


@pytest.mark.slow
def test_a_folder_of_odd_names_gets_one_record_per_file(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for name, data in zip(ODD, distinct_jpegs(len(ODD))):
        (photos / name).write_bytes(data)
    result = visionfleet("relabel", str(photos), "--output", str(tmp_path / "labels"), "--wait",
                         env=embedded_env(tmp_path), cwd=tmp_path, timeout=240)
    assert result.returncode == 0, result.stderr
    root = tmp_path / "labels" / result.stdout.strip().splitlines()[-1]
    summary = json.loads((root / "_SUCCESS.json").read_text())
    assert (summary["total"], summary["ok"], summary["errors"]) == (len(ODD), len(ODD), 0)
    records = [json.loads(line) for part in summary["parts"]
               for line in (root / part).read_text(encoding="utf-8").split("\n")[:-1]]
    assert sorted(r["uri"] for r in records) == sorted(str(photos / name) for name in ODD)


def test_oss_keys_of_odd_names_list_and_plan_as_they_are(bucket, oss_settings):
    """OSS keys take any UTF-8 (listings come URL-encoded); each is one planned URI, as stored."""
    # Not the name that is not UTF-8 (no valid key), nor the line break: the local server's HTTP
    # layer answers 404 to a path holding %0A.
    names = [name for name in ODD[:-1] if "\n" not in name]
    for name in names:
        bucket.put_object(f"in/{name}", b"x")
    listed = list(iter_source(f"oss://{bucket.bucket_name}/in/"))
    assert sorted(listed) == sorted(f"oss://{bucket.bucket_name}/in/{name}" for name in names)
    assert [uri for uri, _ in shard_lists.decode(shard_lists.encode([(uri, None) for uri in listed]))] == listed

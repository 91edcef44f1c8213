"""The output sink on both backends (a local folder, OSS over real HTTP): the names and bytes it writes
are the ones jobs have always written, so old outputs read and old jobs resume."""
import json

import pytest

from visionfleet.pipeline.errors import ConfigError
from visionfleet.pipeline.location import Location
from visionfleet.pipeline.sink import FORMATS, sink_for, sink_for_part


@pytest.fixture(params=["local", "oss"])
def root(request, tmp_path) -> str:
    """A job's output folder, ``DEST/<job_id>``, on each backend."""
    if request.param == "local":
        return str(tmp_path / "out" / "job1")
    request.getfixturevalue("oss_settings")
    return f"oss://{request.getfixturevalue('bucket').bucket_name}/out/job1"


def test_location_joins_as_the_backends_always_did(tmp_path):
    assert str(Location.parse("oss://b/out/").child("j", "x.json")) == "oss://b/out/j/x.json"
    assert str(Location.parse("/data//out/./").child("j", "x.json")) == "/data/out/j/x.json"
    assert Location.parse("oss://b/k").absolute() == Location.parse("oss://b/k")
    assert Location.parse("rel/out").absolute().uri.endswith("/rel/out")
    assert Location.parse("rel/../out").absolute().uri.endswith("/rel/../out")  # the kernel's meaning of ..


RECORDS = [{"uri": "/in/猫.jpg", "status": "ok", "labels": [], "model": "m"},
           {"uri": "/in/b.jpg", "status": "error", "error": "bad", "labels": None}]


def test_a_part_is_written_whole_under_its_old_name_and_an_orphan_goes(root):
    sink = sink_for(root)
    name = sink.write_part(3, 0, 2, 7, RECORDS)
    assert name == "part-000003-0000000-0000002-t7.jsonl"
    uri = f"{root}/{name}"
    assert sink.root.storage.read(uri) == "".join(json.dumps(r, ensure_ascii=False) + "\n"
                                                  for r in RECORDS).encode()
    sink.delete_part(name)
    sink.delete_part(name)  # gone already: fine
    assert not sink.root.storage.exists(uri)


@pytest.mark.parametrize("output_format", FORMATS)
def test_every_format_reads_back_its_records_by_the_part_name_alone(root, output_format):
    sink = sink_for(root, output_format)
    name = sink.write_part(0, 0, 2, 1, RECORDS)
    assert name == f"part-000000-0000000-0000002-t1.{output_format}"
    got = list(sink_for_part(root, name).read_part(name))
    assert [{k: v for k, v in r.items() if v is not None or k == "labels"} for r in got] == RECORDS
    sink.delete_part(name)  # an orphan of a refused commit
    assert not sink.root.storage.exists(f"{root}/{name}")


@pytest.mark.parametrize("output_format", FORMATS)
def test_checkpoint_copies_round_trip_for_resume(root, output_format):
    sink = sink_for(root, output_format)
    copies = {0: {"offset": 10, "parts": ["p"], "done": False, "token": 2}, 12: {"offset": 4, "token": 1}}
    for shard, copy in copies.items():
        sink.write_checkpoint(shard, copy)
    assert sink.root.storage.read(f"{root}/_checkpoints/shard-000012.json") == json.dumps(copies[12]).encode()
    assert dict(sink.checkpoints()) == copies


@pytest.mark.parametrize("output_format", FORMATS)
def test_finalise_writes_the_summary_and_success_only_for_a_job_that_succeeded(root, output_format):
    storage = Location.parse(root).storage
    failed = {"job_id": "job1", "state": "failed", "parts": ["a"]}
    sink_for(root, output_format).finalise(failed)
    assert storage.read(f"{root}/_SUMMARY.json") == json.dumps(failed, indent=1).encode()
    assert not storage.exists(f"{root}/_SUCCESS.json")  # a pipeline waiting for it never takes this job
    succeeded = {**failed, "state": "succeeded", "parts": ["a", "b"]}  # resumed to its end
    sink_for(root, output_format).finalise(succeeded)
    for name in ("_SUMMARY.json", "_SUCCESS.json"):
        assert storage.read(f"{root}/{name}") == json.dumps(succeeded, indent=1).encode()


def test_an_unknown_format_names_the_known_ones(tmp_path):
    with pytest.raises(ConfigError, match="jsonl, parquet"):
        sink_for(str(tmp_path), "csv")
    with pytest.raises(ConfigError, match=r"\.jsonl, \.parquet"):
        sink_for_part(str(tmp_path), "part-000000-0000000-0000001-t1.csv")

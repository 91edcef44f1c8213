"""Parquet output: a real embedded job writes it, pyarrow and `visionfleet diff` read it, and its rows are
the JSON Lines records of the same input."""
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bench.samples import PHOTOS
from tests.helpers import embedded_env, relabel, visionfleet
from tests.photos import KNOWN
from visionfleet.pipeline.sink import sink_for
from visionfleet.pipeline.sink.parquet import LABEL, to_table
from visionfleet.reports.outputs import JobOutput

COLUMNS = {"uri": pa.string(), "status": pa.string(), "error": pa.string(), "labels": pa.list_(LABEL),
           "model": pa.string(), "model_version": pa.string(), "preprocess": pa.string(),
           "fingerprint": pa.string()}


def present(record: dict) -> dict:
    """A record's non-null fields (labels null is kept): a field a JSON Lines record lacks is a null column in Parquet."""
    return {k: v for k, v in record.items() if v is not None or k == "labels"}


@pytest.mark.slow
def test_a_parquet_job_has_the_json_lines_records_as_rows_and_diffs_against_one(tmp_path, photos):
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    env = embedded_env(tmp_path)
    out = tmp_path / "labels"
    text_id = relabel(env, str(photos), "--output", str(out), "--wait", cwd=tmp_path)
    table_id = relabel(env, str(photos), "--output", str(out), "--format", "parquet", "--wait", cwd=tmp_path)

    summary = json.loads((out / table_id / "_SUCCESS.json").read_text())
    assert summary["parts"] and all(p.endswith(".parquet") for p in summary["parts"])
    table = pa.concat_tables(pq.read_table(out / table_id / p) for p in summary["parts"])
    assert dict(zip(table.schema.names, table.schema.types)) == COLUMNS  # no embedding column: none asked
    rows = table.to_pylist()
    by_name = {r["uri"].rsplit("/", 1)[1]: r for r in rows}
    assert len(by_name) == len(rows) == len(PHOTOS) + 1
    for name, classes in KNOWN.items():
        assert by_name[name]["labels"][0]["class_id"] in classes
    broken = by_name["broken.jpg"]
    assert (broken["status"], broken["labels"]) == ("error", None) and "truncated" in broken["error"]
    assert {r["preprocess"] for r in rows if r["status"] == "ok"} == {"1"}

    text = JobOutput.open(str(out / text_id))
    assert [present(r) for r in JobOutput.open(str(out / table_id)).records()] == [present(r) for r in text.records()]

    result = visionfleet("diff", str(out / text_id), str(out / table_id), "--output", str(tmp_path / "report"),
                         env=env)
    assert result.returncode == 0, result.stderr
    totals = json.loads((tmp_path / "report" / "diff.json").read_text())["totals"]
    assert (totals["both"], totals["only_old"], totals["only_new"]) == (len(PHOTOS) + 1, 0, 0)
    assert (totals["errors_new"], totals["changed_top1"]) == (1, 0)


def test_embeddings_are_a_fixed_size_float16_column_read_back_to_their_precision(tmp_path):
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(3, 1280)).astype(np.float32)
    records = [{"uri": f"/in/{i}.jpg", "status": "ok", "labels": [{"label": "cat", "class_id": 281, "score": 0.9}],
                "model": "m", "model_version": "3", "preprocess": "1", "embedding": v.tolist()}
               for i, v in enumerate(vectors)]
    records.insert(1, {"uri": "/in/bad.jpg", "status": "error", "error": "not an image", "labels": None,
                       "model": "m", "model_version": "3"})
    sink = sink_for(str(tmp_path / "job"), "parquet")
    name = sink.write_part(0, 0, 4, 1, records)
    table = pq.read_table(tmp_path / "job" / name)
    assert table.schema.field("embedding").type == pa.list_(pa.float16(), 1280)
    got = list(sink.read_part(name))
    assert [r["uri"] for r in got] == [r["uri"] for r in records]  # input order
    assert got[1]["embedding"] is None and got[1]["labels"] is None and got[1]["error"] == "not an image"
    read = np.array([r["embedding"] for r in got if r["status"] == "ok"], dtype=np.float32)
    assert np.array_equal(read, vectors.astype(np.float16).astype(np.float32))  # float16 of each value, exactly
    assert np.allclose(read, vectors, rtol=1e-3, atol=1e-4)


def test_a_part_whose_embeddings_disagree_in_size_is_refused():
    records = [{"uri": "/a", "status": "ok", "labels": [], "embedding": [0.0] * 4},
               {"uri": "/b", "status": "ok", "labels": [], "embedding": [0.0] * 5}]
    with pytest.raises(ValueError, match=r"embeddings of \[4, 5\] values in one part"):
        to_table(records)


def test_a_name_that_is_not_utf8_keeps_its_bytes_as_escapes():
    uri = "/in/caf\udce9.jpg"  # os.fsdecode of b"/in/caf\xe9.jpg"
    assert to_table([{"uri": uri, "status": "ok", "labels": []}])["uri"].to_pylist() == ["/in/caf\\xe9.jpg"]

"""Parquet output: a real embedded job writes it, pyarrow and `visionfleet diff` read it, and its rows are
the JSON Lines records of the same input."""
import json

import numpy as np
import oss2
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bench.samples import PHOTOS
from tests.helpers import embedded_env, relabel, visionfleet, wait_for_job
from tests.photos import KNOWN, distinct_jpegs
from tests.test_shard_runner import runner, stored
from visionfleet.broker.planner import plan_job
from visionfleet.checkpoints import open_store
from visionfleet.pipeline import shard_lists
from visionfleet.pipeline.job import JobSpec
from visionfleet.pipeline.preprocess import DEFAULT_DECODER, VERSIONS
from visionfleet.pipeline.sink import sink_for
from visionfleet.pipeline.sink.parquet import LABEL, to_table
from visionfleet.reports.outputs import JobOutput
from visionfleet.workers.shard_runner import Outcome

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
    # Commits of 4 records: the shard's last one rewrites its three parts as one.
    table_id = relabel({**env, "VISIONFLEET_COMMIT_EVERY": "4"}, str(photos), "--output", str(out),
                       "--format", "parquet", "--wait", cwd=tmp_path)

    summary = json.loads((out / table_id / "_SUCCESS.json").read_text())
    assert summary["parts"] == [p.name for p in (out / table_id).glob("part-*")]
    assert len(summary["parts"]) == 1 and summary["parts"][0].startswith(f"part-000000-0000000-{len(PHOTOS) + 1:07d}-t")
    logged = [json.loads(line) for log in (tmp_path / "home" / "logs").glob("*.log") for line in log.open()
              if line.startswith("{")]  # the JSON log lines, not what Celery prints
    assert [e["end"] for e in logged if e.get("event") == "commit" and e.get("job_id") == table_id] == [4, 8, 9]
    table = pa.concat_tables(pq.read_table(out / table_id / p) for p in summary["parts"])
    assert dict(zip(table.schema.names, table.schema.types)) == COLUMNS  # no embedding column: none asked
    rows = table.to_pylist()
    by_name = {r["uri"].rsplit("/", 1)[1]: r for r in rows}
    assert len(by_name) == len(rows) == len(PHOTOS) + 1
    for name, classes in KNOWN.items():
        assert by_name[name]["labels"][0]["class_id"] in classes
    broken = by_name["broken.jpg"]
    assert (broken["status"], broken["labels"]) == ("error", None) and "truncated" in broken["error"]
    assert {r["preprocess"] for r in rows if r["status"] == "ok"} == {VERSIONS[DEFAULT_DECODER]}

    text = JobOutput.open(str(out / text_id))
    assert [present(r) for r in JobOutput.open(str(out / table_id)).records()] == [present(r) for r in text.records()]

    result = visionfleet("diff", str(out / text_id), str(out / table_id), "--output", str(tmp_path / "report"),
                         env=env)
    assert result.returncode == 0, result.stderr
    totals = json.loads((tmp_path / "report" / "diff.json").read_text())["totals"]
    assert (totals["both"], totals["only_old"], totals["only_new"]) == (len(PHOTOS) + 1, 0, 0)
    assert (totals["errors_new"], totals["changed_top1"]) == (1, 0)
    report = visionfleet("report", table_id, "--output", str(tmp_path / "cost"), env=env)
    assert report.returncode == 0, report.stderr
    assert json.loads((tmp_path / "cost" / "report.json").read_text())["images"] == len(PHOTOS) + 1


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


@pytest.fixture
def parquet_job(tmp_path):
    """A Parquet job of 20 photos in one shard, planned on a real SQLite store."""
    (tmp_path / "in").mkdir()
    for i, data in enumerate(distinct_jpegs(20)):
        (tmp_path / "in" / f"{i:02d}.jpg").write_bytes(data)
    store = open_store(f"sqlite:///{tmp_path / 'state.db'}")
    spec = JobSpec(source=str(tmp_path / "in"), output=str(tmp_path / "out"), shard_size=20, output_format="parquet")
    job_id = plan_job(spec, store, lambda j, s: None)
    return store, job_id, tmp_path / "out" / job_id


def uris(root) -> list[str]:
    """The URIs of the job's listed parts, in order, read as a table reader reads them."""
    parts = json.loads((root / "_SUCCESS.json").read_text())["parts"]
    return pq.read_table([root / p for p in parts], columns=["uri"])["uri"].to_pylist()


def test_a_shard_ends_as_one_part_that_replaces_its_commits(parquet_job):
    store, job_id, root = parquet_job
    run = runner(store, commit_every=6)
    assert run.run(stored(store, job_id), 0) is Outcome.DONE  # commits 0-4, 4-10, 10-16, then 16-20 as 0-20
    whole = f"part-000000-0000000-0000020-t{store.checkpoint(job_id, 0).parts[0].rsplit('-t', 1)[1]}"
    assert store.parts(job_id) == [whole] and [p.name for p in root.glob("part-*")] == [whole]
    assert uris(root) == shard_lists.read(stored(store, job_id), 0)  # every input once, in order
    assert json.loads((root / "_checkpoints" / "shard-000000.json").read_text())["parts"] == [whole]


def test_a_whole_part_spans_a_hand_back_and_one_whose_commit_is_refused_is_removed(parquet_job):
    store, job_id, root = parquet_job
    looks = []

    def stop_after_ten() -> bool:
        looks.append(1)
        return len(looks) >= 10

    assert runner(store, stop=stop_after_ten).run(stored(store, job_id), 0) is Outcome.HANDED_BACK
    assert len(store.checkpoint(job_id, 0).parts) == 2
    listed = []

    def steal_before_the_last_commit() -> bool:  # one look before starting, then one per record: 11 left
        looks.append(1)
        if len(looks) == 10 + 12:
            listed.extend(store.checkpoint(job_id, 0).parts)
            store.release(job_id, 0, late.activity.token)
            store.acquire(job_id, 0, "thief", ttl_s=0)
        return False

    late = runner(store, owner="w2", stop=steal_before_the_last_commit)
    assert late.run(stored(store, job_id), 0) is Outcome.LOST_LEASE
    assert len(listed) == 4 and store.checkpoint(job_id, 0).parts == listed  # the commits stay, both workers'
    assert sorted(p.name for p in root.glob("part-*")) == sorted(listed)  # the refused whole part is gone

    assert runner(store, owner="w3").run(stored(store, job_id), 0) is Outcome.DONE  # the thief's lease ran out
    assert len(store.parts(job_id)) == 1 and not any((root / p).exists() for p in listed)
    assert uris(root) == shard_lists.read(stored(store, job_id), 0)


@pytest.mark.slow
def test_two_fleet_workers_leave_one_part_per_shard_on_oss_each_input_once(bucket, fleet_env, workers, oss_settings):
    images = distinct_jpegs(120)
    for i, data in enumerate(images):
        bucket.put_object(f"many/{i:03d}.jpg", data)
    workers.start(2, VISIONFLEET_COMMIT_EVERY="10")  # shards of 40: several commits each, on Redis
    job_id = relabel(fleet_env, f"oss://{bucket.bucket_name}/many/", "--output", f"oss://{bucket.bucket_name}/out/",
                     "--shard-size", "40", "--format", "parquet")
    status = wait_for_job(fleet_env, workers, job_id, timeout=300)
    assert (status["state"], status["done"], status["errors"]) == ("succeeded", 120, 0)
    root = f"oss://{bucket.bucket_name}/out/{job_id}"
    output = JobOutput.open(root)
    assert [p.split("-")[1:4] for p in output.summary["parts"]] == [[f"{s:06d}", "0000000", "0000040"]
                                                                    for s in range(3)]
    assert sorted(r["uri"] for r in output.records()) == [f"oss://{bucket.bucket_name}/many/{i:03d}.jpg"
                                                          for i in range(120)]
    listed = {o.key for o in oss2.ObjectIterator(bucket, prefix=f"out/{job_id}/part-")}
    assert listed == {f"out/{job_id}/{p}" for p in output.summary["parts"]}  # the replaced parts are gone


def test_a_part_of_errors_alone_in_an_embeddings_job_still_has_the_column(tmp_path):
    """Else a reader that takes its columns from the first file (DuckDB, pyarrow) drops the embeddings."""
    sink = sink_for(str(tmp_path / "job"), "parquet", embedding_dim=1280)
    name = sink.write_part(0, 0, 1, 1, [{"uri": "/in/bad.jpg", "status": "error", "error": "x", "labels": None}])
    assert pq.read_schema(tmp_path / "job" / name).field("embedding").type == pa.list_(pa.float16(), 1280)
    with pytest.raises(ValueError, match=r"embeddings of \[4, 1280\] values"):
        sink.encode([{"uri": "/a", "status": "ok", "labels": [], "embedding": [0.0] * 4}])


@pytest.mark.slow
def test_a_package_job_in_parquet_with_embeddings_reads_back_right_and_stands_as_an_incremental_base(tmp_path):
    """The colors package's embedding is each channel's mean (0..1): a solid PNG's is exact, so the float16
    column read back with pyarrow is checked value by value; an incremental run then stands on the Parquet job."""
    from PIL import Image

    from tests.model_packages import colors_files, write_files

    colours = {"red": (255, 0, 0), "teal": (0, 160, 100), "slate": (60, 70, 200)}
    (tmp_path / "in").mkdir()
    for name, rgb in colours.items():
        Image.new("RGB", (40, 30), rgb).save(tmp_path / "in" / f"{name}.png")
    env = embedded_env(tmp_path)
    model = ["--model", write_files(tmp_path / "colors", colors_files("3")), "--format", "parquet", "--embeddings"]
    job_id = relabel(env, "in", "--output", "labels", *model, "--wait", cwd=tmp_path)
    root = tmp_path / "labels" / job_id
    summary = json.loads((root / "_SUCCESS.json").read_text())
    assert (summary["embedding_dim"], summary["model_version"]) == (3, "3")
    table = pq.read_table([str(root / part) for part in summary["parts"]])
    assert table.schema.field("embedding").type == pa.list_(pa.float16(), 3)
    rows = {row["uri"].rsplit("/", 1)[1]: row for row in table.to_pylist()}
    for name, rgb in colours.items():
        expected = np.float16(np.array(rgb, np.float32) / 255)
        assert np.array_equal(np.array(rows[f"{name}.png"]["embedding"], np.float16), expected), name
        assert rows[f"{name}.png"]["labels"][0]["label"] == max(zip(rgb, ("red", "green", "blue")))[1]

    Image.new("RGB", (40, 30), (0, 0, 250)).save(tmp_path / "in" / "blue.png")
    again = relabel(env, "in", "--output", "labels", *model, "--incremental-from", str(root), "--wait", cwd=tmp_path)
    summary = json.loads((tmp_path / "labels" / again / "_SUCCESS.json").read_text())
    assert (summary["total"], summary["skipped"]) == (1, 3)
    (row,) = pq.read_table([str(tmp_path / "labels" / again / p) for p in summary["parts"]]).to_pylist()
    assert (row["uri"].rsplit("/", 1)[1], row["labels"][0]["label"]) == ("blue.png", "blue")

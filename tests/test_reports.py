"""`visionfleet diff` and `visionfleet report` on real runs, their pages checked in a real browser."""
import json
import os
import shutil
import signal

import pytest

from bench.samples import PHOTOS
from tests.browser import load, value_at
from tests.helpers import embedded_env, linked_photos, relabel, visionfleet, wait_until
from tests.test_preemption import FAST, Job
from visionfleet.pipeline.errors import VisionfleetError
from visionfleet.reports import diff as diff_module
from visionfleet.reports.diff import ANOTHER, OTHER, TOP_CLASSES, diff
from visionfleet.reports.diff_page import render as render_diff
from visionfleet.reports.outputs import JobOutput
from visionfleet.reports.page import number

PLANTED = {"label": "planted label", "class_id": 999, "score": 0.99}
SLOW = "tests.slow_model:build"


def edit_record(root, name, change) -> None:
    """Change the record of the input called ``name`` in the job's output, in place."""
    summary = json.loads((root / "_SUCCESS.json").read_text())
    for part in summary["parts"]:
        lines = [json.loads(line) for line in (root / part).read_text().splitlines()]
        for record in lines:
            if record["uri"].endswith("/" + name):
                change(record)
        (root / part).write_text("".join(json.dumps(r) + "\n" for r in lines))


def assert_page_shows_the_json(page, data) -> None:
    shown = load(page)
    assert shown["requests"] == [], shown["requests"]  # nothing fetched: the page stands alone
    assert shown["problems"] == [], shown["problems"]
    assert len(shown["keyed"]) >= 6
    for key, text in shown["keyed"].items():
        assert text == number(value_at(data, key), key), (key, text)


@pytest.mark.slow
def test_diff_of_two_real_runs_adds_up_and_puts_the_planted_change_first(tmp_path, photos):
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    env = embedded_env(tmp_path)
    old_id = relabel(env, str(photos), "--output", str(tmp_path / "labels"), "--top-k", "5", "--wait", cwd=tmp_path)
    shutil.copy(photos / "chelsea.png", photos / "chelsea-again.png")  # an input only the new run has
    new_id = relabel(env, str(photos), "--output", str(tmp_path / "labels"), "--top-k", "3", "--wait", cwd=tmp_path)
    old, new = tmp_path / "labels" / old_id, tmp_path / "labels" / new_id
    edit_record(old, "coffee.png", lambda r: r["labels"][0].update(score=0.98))  # the old model was sure...
    edit_record(new, "coffee.png", lambda r: r["labels"].insert(0, dict(PLANTED)))  # ...and the new one disagrees

    result = visionfleet("diff", str(old), str(new), "--output", str(tmp_path / "report"), env=env)
    assert result.returncode == 0, result.stderr
    assert "top-1 changed for 1 of" in result.stdout
    report = json.loads((tmp_path / "report" / "diff.json").read_text())
    t = report["totals"]
    inputs = len(PHOTOS) + 1
    assert (t["both"], t["only_old"], t["only_new"], t["errors_old"], t["errors_new"]) == (inputs, 0, 1, 1, 1)
    assert t["both"] + t["only_old"] == report["old"]["total"] and t["both"] + t["only_new"] == report["new"]["total"]
    assert (t["both_ok"], t["changed_top1"]) == (inputs - 1, 1)
    assert report["old"]["job_id"] == old_id and report["new"]["runtime"] == "onnxruntime"
    first = json.loads((tmp_path / "report" / "changed.jsonl").read_text().splitlines()[0])
    assert first["uri"].endswith("/coffee.png") and first["new"]["label"] == "planted label"
    matrix = report["transitions"]["matrix"]
    assert sum(map(sum, matrix)) == t["both_ok"] and sum(b["changed"] for b in report["confidence_bands"]) == 1
    assert report["gained"][0]["label"] == "planted label"
    assert_page_shows_the_json(tmp_path / "report" / "report.html", report)
    assert "coffee.png" in (tmp_path / "report" / "report.html").read_text()  # its picture's card


def synthetic(root, records: list[dict]) -> JobOutput:
    root.mkdir(parents=True)
    (root / "part-0.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (root / "_SUCCESS.json").write_text(json.dumps({"job_id": root.name, "total": len(records), "ok": len(records),
                                                    "errors": 0, "parts": ["part-0.jsonl"], "model": "m"}))
    return JobOutput.open(str(root))


def record(i: int, label: str, score: float) -> dict:
    return {"uri": f"/img/{i}.jpg", "status": "ok", "labels": [{"label": label, "class_id": 0, "score": score}]}


def test_partitions_join_the_same_as_one_and_a_sample_keeps_the_most_confident(tmp_path, monkeypatch):
    old = synthetic(tmp_path / "old", [record(i, f"c{i % 7}", 0.5) for i in range(1000)])
    new = synthetic(tmp_path / "new", [record(i, f"c{i % 5}", (i % 100) / 100) for i in range(1, 1001)])
    whole = diff(old, new, tmp_path / "one")
    monkeypatch.setattr(diff_module, "PARTITION_RECORDS", 64)  # 16 partitions, each joined alone
    parts = diff(old, new, tmp_path / "many", sample=10)
    assert whole["totals"] == parts["totals"] and whole["transitions"] == parts["transitions"]
    assert (whole["totals"]["only_old"], whole["totals"]["only_new"]) == (1, 1)
    rows = [json.loads(line) for line in (tmp_path / "many" / "changed.jsonl").read_text().splitlines()]
    everything = [json.loads(line) for line in (tmp_path / "one" / "changed.jsonl").read_text().splitlines()]
    assert len(rows) == 10 and rows == everything[:10]
    assert [min(r["old"]["score"], r["new"]["score"]) for r in everything] == \
        sorted((min(r["old"]["score"], r["new"]["score"]) for r in everything), reverse=True)


def test_every_change_is_off_the_diagonal_even_between_two_rarer_classes(tmp_path):
    """As reported: 34 of 67 changes sat in the "other -> other" cell, on the diagonal that reads "unchanged"."""
    common = [record(i, f"common{i % TOP_CLASSES}", 0.9) for i in range(150)]  # 15 of each: the top classes
    rare = [record(i, f"rare{i % 5}", 0.6) for i in range(150, 200)]  # 10 of each: "other"
    old = synthetic(tmp_path / "old", common + rare)
    moved = [record(i, f"common{(i + 1) % TOP_CLASSES}", 0.9) if i < 10 else r for i, r in enumerate(common)]
    swapped = [record(i, f"rare{(i + 1) % 5}", 0.7) if i % 2 == 0 else r for i, r in enumerate(rare, 150)]
    result = diff(old, synthetic(tmp_path / "new", moved + swapped), tmp_path / "report")
    t, m = result["totals"], result["transitions"]
    assert t["changed_top1"] == 10 + 25
    assert m["classes"][-1] == OTHER and m["columns"] == m["classes"] + [ANOTHER]
    matrix = m["matrix"]
    off_diagonal = sum(n for i, row in enumerate(matrix) for j, n in enumerate(row) if i != j)
    assert off_diagonal == t["changed_top1"] and sum(map(sum, matrix)) == t["both_ok"]
    assert (matrix[-1][-2], matrix[-1][-1]) == (25, 25)  # a rare label kept; one changed to another rare one
    page = render_diff(result, tmp_path / "report" / "changed.jsonl")
    assert "Off the diagonal is what changed: 35 images." in page


@pytest.mark.slow
def test_diff_refuses_a_folder_that_is_not_a_finished_job(tmp_path):
    (tmp_path / "half").mkdir()
    with pytest.raises(VisionfleetError, match="has no _SUCCESS.json"):
        JobOutput.open(str(tmp_path / "half"))
    result = visionfleet("diff", str(tmp_path / "half"), str(tmp_path / "half"), "--output", str(tmp_path / "r"),
                         env={"PATH": os.environ["PATH"], "VISIONFLEET_HOME": str(tmp_path / "home")})
    assert result.returncode == 2 and "is not an ended job's output" in result.stderr


@pytest.mark.slow
def test_report_of_a_run_with_a_killed_worker_counts_the_redone_images(bucket, fleet_env, workers, tmp_path):
    # A steady pace (a batch of 8 every 0.25 s, a commit every 64 images, 2 s apart): the kill below
    # lands well before the next commit, with labelled images that no commit will save.
    allowed = {"VISIONFLEET_MODELS": SLOW}
    paced = {**FAST, **allowed, "VISIONFLEET_COMMIT_EVERY": "64", "VISIONFLEET_TEST_PREDICT_S": "0.25"}
    (first,) = workers.start(1, **paced)
    job = Job(bucket, {**fleet_env, **allowed}, 240, shard_size=240, model=SLOW)
    # Labelled 16 to 48 since the last commit: past the first commit (after one batch, at 8, where a
    # beat can say 8 just as the commit zeroes it: CI once killed there and saw redone 0) and at
    # least two batches (0.5 s) before the next one, at 64.
    wait_until(lambda: [w for w in job.store.workers()
                        if w.get("job_id") == job.id and 16 <= w.get("labelled", 0) <= 48],
               120, "a beat saying the worker has labelled batches well past its last commit")
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    workers.start(1, **paced)
    assert job.wait_end(workers)["state"] == "succeeded"
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"ecs.c7.xlarge": {"on_demand": 0.2, "spot": 0.05}}))
    result = visionfleet("report", job.id, "--output", str(tmp_path / "run"), "--prices", str(prices),
                         "--instance-type", "ecs.c7.xlarge", env=fleet_env)
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["redone_images"] > 0 and report["takeovers"] == 1 and report["images"] == 240
    assert sum(t["images"] for t in report["timeline"]) == 240
    assert sum(w["images"] for w in report["workers"]) == 240
    cost = report["cost"][0]
    assert cost["spot_per_million_images"] == pytest.approx(cost["on_demand_per_million_images"] / 4, rel=1e-3)
    auto = json.loads(job.read(f"{job.root}/_REPORT.json"))  # written when the job ended, beside _SUCCESS.json
    assert (auto["redone_images"], auto["takeovers"]) == (report["redone_images"], 1)
    assert_page_shows_the_json(tmp_path / "run" / "report.html", report)


@pytest.mark.slow
def test_report_of_a_twenty_second_job_is_drawn_by_the_second_and_its_mean_is_the_headline(tmp_path):
    """As reported: a 34 s job was drawn over "0-60 minutes", flat, far below its headline images/s."""
    env = embedded_env(tmp_path)
    job_id = relabel(env, str(linked_photos(tmp_path, 1500)), "--output", str(tmp_path / "labels"), "--wait",
                     cwd=tmp_path)  # about 20 s of labelling on 2 cores
    result = visionfleet("report", job_id, "--output", str(tmp_path / "run"), env=env)
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    points, span = report["timeline"], report["labelling_s"]
    assert report["timeline_bucket_s"] < 60 and len(points) >= 5, (report["timeline_bucket_s"], span)
    assert points[0]["offset_s"] == 0 and points[-1]["offset_s"] < span
    assert sum(p["images"] for p in points) == report["images"] == 1500
    ends = [p["offset_s"] for p in points[1:]] + [span]
    mean = sum(p["images_per_s"] * (end - p["offset_s"]) for p, end in zip(points, ends)) / span
    assert mean == pytest.approx(report["images_per_s"], rel=1e-2)
    auto = json.loads((tmp_path / "labels" / job_id / "_REPORT.json").read_text())  # written as the job ended
    assert auto["timeline_bucket_s"] == report["timeline_bucket_s"]
    assert sum(p["images"] for p in auto["timeline"]) == 1500
    assert_page_shows_the_json(tmp_path / "run" / "report.html", report)
    assert "over seconds from the start" in (tmp_path / "run" / "report.html").read_text()


@pytest.mark.slow
def test_diff_reads_and_writes_oss(bucket, fleet_env):
    name = bucket.bucket_name
    for side, label in (("old", "tabby"), ("new", "tiger cat")):
        records = [{"uri": f"oss://{name}/in/{i}.jpg", "status": "ok",
                    "labels": [{"label": label if i == 0 else "ok", "class_id": 0, "score": 0.9}]} for i in range(3)]
        bucket.put_object(f"{side}/part-0.jsonl", "".join(json.dumps(r) + "\n" for r in records))
        bucket.put_object(f"{side}/_SUCCESS.json", json.dumps({"job_id": side, "total": 3, "ok": 3, "errors": 0,
                                                               "parts": ["part-0.jsonl"]}))
    result = visionfleet("diff", f"oss://{name}/old/", f"oss://{name}/new", "--output", f"oss://{name}/review/",
                         env=fleet_env)
    assert result.returncode == 0, result.stderr
    assert f"oss://{name}/review/report.html" in result.stdout
    changed = [json.loads(line) for line in bucket.get_object("review/changed.jsonl").read().splitlines()]
    assert changed == [{"uri": f"oss://{name}/in/0.jpg", "old": {"label": "tabby", "score": 0.9},
                        "new": {"label": "tiger cat", "score": 0.9}}]
    assert b"Content-Security-Policy" in bucket.get_object("review/report.html").read()
    signed = visionfleet("diff", f"oss://{name}/old/", f"oss://{name}/new", "--output", f"oss://{name}/signed/",
                         "--thumbnails", env=fleet_env)
    assert signed.returncode == 0, signed.stderr
    page = bucket.get_object("signed/report.html").read().decode()
    endpoint = fleet_env["OSS_ENDPOINT"].split("://", 1)[1]
    assert "Signature=" in page and endpoint in page  # the picture's signed URL, and its host allowed by the CSP

"""A job's state says what happened: errors by kind, the share rule, the early stop and its resume.

In one process: real SQLite store, real local storage, the real decoder and access check, the counting
model (the real model, workers and CLI run the same in test_embedded.py)."""
import json
import os

import pytest

from tests.photos import distinct_jpegs
from tests.test_labeller import CountingModel
from visionfleet.broker.planner import plan_job
from visionfleet.checkpoints import open_store
from visionfleet.checkpoints.job_book import ErrorKind, Progress
from visionfleet.checkpoints.resume import resume_job
from visionfleet.checkpoints.verdict import kinds_line, may_stop_early, stopped_early, too_many_errors
from visionfleet.pipeline.access import Access
from visionfleet.pipeline.error_kinds import kind_of
from visionfleet.pipeline.job import Job, JobSpec
from visionfleet.pipeline.labeller import Labeller, LoadSettings
from visionfleet.workers.settings import WorkerSettings
from visionfleet.workers.shard_runner import Outcome, ShardRun


def test_every_reason_the_data_path_writes_has_its_kind(tmp_path):
    (tmp_path / "text.jpg").write_bytes(b"just text")
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "cut.jpg").write_bytes(distinct_jpegs(1)[0][:300])
    (tmp_path / "big.jpg").write_bytes(distinct_jpegs(1)[0] + b"\0" * 2000)
    (tmp_path / "folder.jpg").mkdir()
    os.mkfifo(tmp_path / "pipe.jpg")
    (tmp_path / "permission denied.jpg").write_bytes(b"text")  # a name that says another kind than its reason
    labeller = Labeller(CountingModel(max_batch_size=4), LoadSettings(io_threads=1, max_file_bytes=2000))
    kinds = {name: kind_of(labeller.load(str(tmp_path / name), 1).error) for name in (
        "missing.jpg", "text.jpg", "empty.jpg", "cut.jpg", "big.jpg", "folder.jpg", "pipe.jpg",
        "permission denied.jpg")}
    assert kinds == {"missing.jpg": "not found", "text.jpg": "not an image", "empty.jpg": "empty file",
                     "cut.jpg": "truncated", "big.jpg": "too large", "folder.jpg": "not a file",
                     "pipe.jpg": "not a file", "permission denied.jpg": "not an image"}
    outside = Access(frozenset(), (str(tmp_path / "folder.jpg"),), None).check_uri
    assert kind_of(labeller.load(str(tmp_path / "text.jpg"), 1, check=outside).error) == "not allowed"
    # Reasons this test cannot make as root, or without OSS: their text as the storage writes it.
    assert kind_of("permission denied: /data/a.jpg") == "access denied"
    assert kind_of("cannot read oss://b/dir: 404/k.jpg: 404 NoSuchKey: The specified key does not exist.") == \
        "not found"
    assert kind_of("cannot read oss://b/k.jpg: 403 AccessDenied: no right") == "access denied"
    assert kind_of("something new") == "other"


def progress(ok: int, errors: int, total: int, planned: bool = True) -> Progress:
    return Progress("j", "running", planned, total, 1, 0, ok, errors, 0.0, None, None)


def test_the_share_rule_and_the_early_stop_read_the_counts():
    kinds = {"not found": ErrorKind(3, "no such file: /a.jpg"), "corrupt": ErrorKind(1, "corrupt JPEG image: x")}
    assert too_many_errors(progress(6, 4, 10), kinds, 0.4) is None  # at the rate: allowed
    reason = too_many_errors(progress(5, 5, 10), kinds, 0.4)
    assert reason.startswith("5 of 10 records are errors (50%, over the job's --max-error-rate of 40%); most "
                             "common: not found 3 (e.g. no such file: /a.jpg), corrupt 1, kind not recorded 1.")
    assert too_many_errors(progress(0, 10, 10), kinds, 1.0) is None
    assert may_stop_early(progress(0, 1000, 5000), 0.5)
    assert not may_stop_early(progress(1, 1500, 5000), 0.5)  # an ok record among them
    assert not may_stop_early(progress(0, 999, 5000), 0.5)
    assert not may_stop_early(progress(0, 1000, 5000), 1.0)  # any share accepted: no stop
    assert not may_stop_early(progress(0, 1000, 1000), 0.5)  # nothing left: the share rule ends it
    assert may_stop_early(progress(0, 1000, 1000, planned=False), 0.5)  # still listing: more to come
    assert stopped_early(progress(0, 1000, 5000), kinds, 0.5, "resume", "again") is None  # two kinds
    one = {"not found": ErrorKind(1000, "no such file: /a.jpg")}
    reason = stopped_early(progress(0, 1000, 5000), one, 0.5, "resume", "again")
    assert "4000 of 5000 inputs left unlabelled" in reason and reason.endswith("then `resume` labels them")
    # 1,000 errors of 1,500 inputs stay over 50% whatever the rest gives: a resume would fail, so run it again
    reason = stopped_early(progress(0, 1000, 1500), one, 0.5, "resume", "again")
    assert reason.endswith("then run the job again with its options (`again ...`): its 1000 error records are "
                           "over its --max-error-rate of 50% already, so a resume would fail at its end")
    assert kinds_line(progress(0, 7, 7), {k: ErrorKind(1, "e") for k in "abcde"}).endswith("2 other kinds, kind not "
                                                                                          "recorded 2")


def plan(tmp_path, names: list[str], **spec) -> tuple:
    """A job over a manifest of ``names`` under tmp_path/in (which need not exist yet)."""
    (tmp_path / "in").mkdir(exist_ok=True)
    manifest = tmp_path / "in.txt"
    manifest.write_text("".join(f"{tmp_path / 'in' / n}\n" for n in names))
    store = open_store(f"sqlite:///{tmp_path / 'state.db'}")
    job_id = plan_job(JobSpec(source=str(manifest), output=str(tmp_path / "out"), **spec), store, lambda j, s: None)
    return store, job_id, tmp_path / "out" / job_id


def run(store, job_id: str, shard: int, owner: str = "w1", commit_every: int = 100) -> Outcome:
    labeller = Labeller(CountingModel(max_batch_size=4), LoadSettings(io_threads=2))
    settings = WorkerSettings(commit_every=commit_every, lease_ttl_s=60)
    return ShardRun(store, labeller, settings, owner).run(Job.from_dict(store.job_meta(job_id)), shard)


def write_photos(folder, names: list[str]) -> None:
    for name, data in zip(names, distinct_jpegs(len(names))):
        (folder / name).write_bytes(data)


def test_a_job_of_non_images_fails_with_the_kind_and_keeps_every_record_in_its_summary(tmp_path):
    names = [f"{i:02d}.jpg" for i in range(20)]
    store, job_id, root = plan(tmp_path, names, shard_size=20, max_error_rate=0.5)
    for name in names:
        (tmp_path / "in" / name).write_text("a text file, not a picture")
    assert run(store, job_id, 0) is Outcome.DONE
    p = store.progress(job_id)
    assert (p.state, p.errors) == ("failed", 20)
    assert p.reason.startswith("20 of 20 records are errors (100%, over the job's --max-error-rate of 50%); "
                               "most common: not an image 20 (e.g. not an image")
    summary = json.loads((root / "_SUMMARY.json").read_text())
    assert (summary["state"], summary["reason"], summary["errors"], summary["unlabelled"]) == \
        ("failed", p.reason, 20, 0)
    assert summary["error_kinds"]["not an image"]["count"] == 20 and summary["parts"] == store.parts(job_id)
    assert sum(len((root / part).read_text().splitlines()) for part in summary["parts"]) == 20
    assert not (root / "_SUCCESS.json").exists()


def test_a_few_errors_under_the_rate_succeed(tmp_path):
    names = [f"{i:02d}.jpg" for i in range(20)]
    store, job_id, root = plan(tmp_path, names, shard_size=20, max_error_rate=0.5)
    write_photos(tmp_path / "in", names[3:])
    assert run(store, job_id, 0) is Outcome.DONE
    p = store.progress(job_id)
    assert (p.state, p.reason, p.ok, p.errors) == ("succeeded", None, 17, 3)
    success = json.loads((root / "_SUCCESS.json").read_text())
    assert success == json.loads((root / "_SUMMARY.json").read_text())
    assert success["error_kinds"] == {"not found": {"count": 3, "example": f"no such file: {tmp_path}/in/00.jpg"}}


@pytest.mark.parametrize("rate", [0.9, 1.0])
def test_missing_inputs_stop_the_job_early_and_resume_labels_the_rest_once_they_exist(tmp_path, rate):
    names = [f"{i:04d}.jpg" for i in range(1300)]
    store, job_id, root = plan(tmp_path, names, shard_size=650, max_error_rate=rate)
    assert run(store, job_id, 0) is Outcome.DONE  # 650 committed: too few to judge
    if rate == 1.0:  # any share accepted: no early stop, every input labelled as an error
        assert run(store, job_id, 1) is Outcome.DONE
        assert (store.progress(job_id).state, store.progress(job_id).errors) == ("succeeded", 1300)
        return
    assert run(store, job_id, 1) is Outcome.STOPPED  # commits of 100: stopped at 1054
    p = store.progress(job_id)
    assert (p.state, p.ok, p.errors) == ("failed", 0, 1054)
    assert p.reason.startswith("stopped early: the first 1054 records committed are all errors of one kind, "
                               f"not found, e.g. no such file: {tmp_path}/in/0000.jpg; 246 of 1300 inputs left "
                               "unlabelled. Fix the cause (are the paths right")
    assert p.reason.endswith(f"then `visionfleet resume {job_id} --output {tmp_path / 'out'}` labels them")
    summary = json.loads((root / "_SUMMARY.json").read_text())
    assert (summary["state"], summary["unlabelled"], summary["reason"]) == ("failed", 246, p.reason)
    assert not (root / "_SUCCESS.json").exists()
    assert run(store, job_id, 1, owner="w2") is Outcome.STOPPED  # a redelivery does nothing

    write_photos(tmp_path / "in", names[1054:])  # the cause fixed: the files are there
    sent = []
    resumed = resume_job(store, str(tmp_path / "out"), job_id, lambda j, s: sent.append(s),
                         failed_too=False)  # --only-unfinished: no shard failed, the job runs again all the same
    assert sent == resumed.shards == [1]
    assert run(store, job_id, 1, owner="w2") is Outcome.DONE
    p = store.progress(job_id)
    assert (p.state, p.ok, p.errors) == ("succeeded", 246, 1054)  # 81% errors: under this job's 90%
    summary = json.loads((root / "_SUCCESS.json").read_text())
    assert (summary["state"], summary["unlabelled"], summary["ok"]) == ("succeeded", 0, 246)
    assert json.loads((root / "_SUMMARY.json").read_text()) == summary


def test_a_worker_still_on_a_job_that_stopped_commits_nothing_more(tmp_path):
    names = [f"{i:04d}.jpg" for i in range(1100)]
    store, job_id, root = plan(tmp_path, names, shard_size=1050, max_error_rate=0.5)
    # Another worker holds shard 1 and labels on, while this one stops the job on shard 0.
    other = store.acquire(job_id, 1, "w2", ttl_s=60)
    assert run(store, job_id, 0, commit_every=1000) is Outcome.STOPPED  # the first 1000 (after 4) stop it
    assert (store.progress(job_id).state, store.progress(job_id).done) == ("failed", 1004)
    assert not store.commit(job_id, 1, other.token, offset=50, ok=0, errors=50, part="late", done=True, ttl_s=60)
    assert store.progress(job_id).done == 1004 and store.parts(job_id) == json.loads(
        (root / "_SUMMARY.json").read_text())["parts"]

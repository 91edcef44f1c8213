"""Incremental runs: fingerprints from the listing, carried by shard lists into records; a run from a base
labels only what is new or changed, says how many it skipped, and refuses a base it cannot stand on."""
import functools
import gzip
import hashlib
import json
import os
import time
from pathlib import Path

import pytest

from tests.helpers import embedded_env, visionfleet
from tests.photos import distinct_jpegs
from visionfleet.broker.planner import plan_job
from visionfleet.checkpoints.resume import rebuild
from visionfleet.pipeline import shard_lists
from visionfleet.pipeline.errors import ConfigError
from visionfleet.pipeline.job import Job, JobSpec
from visionfleet.pipeline.preprocess import DEFAULT_DECODER, VERSIONS
from visionfleet.pipeline.sources import FINGERPRINTED, iter_entries, iter_source
from visionfleet.reports import incremental
from visionfleet.reports.outputs import JobOutput

CURRENT = VERSIONS[DEFAULT_DECODER]  # what the default decode's records say

pytest_plugins = ["tests.stores"]  # the store fixtures: SQLite and Redis


def test_a_local_listing_fingerprints_size_and_mtime_and_sees_new_bytes(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"one")
    (tmp_path / "b.jpg").write_bytes(b"two")
    before = dict(iter_entries(str(tmp_path)))
    info = os.stat(tmp_path / "a.jpg")
    assert before[str(tmp_path / "a.jpg")] == f"3-{info.st_mtime_ns}"
    (tmp_path / "a.jpg").write_bytes(b"ONE")  # same size: the time tells
    os.utime(tmp_path / "a.jpg", ns=(info.st_atime_ns, info.st_mtime_ns + 1_000_000_000))
    after = dict(iter_entries(str(tmp_path)))
    assert after[str(tmp_path / "a.jpg")] != before[str(tmp_path / "a.jpg")]
    assert after[str(tmp_path / "b.jpg")] == before[str(tmp_path / "b.jpg")]


def test_a_manifest_gives_fingerprints_only_under_its_header_and_plain_lines_stay_as_they_are(tmp_path):
    odd = ["a b.jpg", "c,d.jpg", "tab\there.jpg"]
    (tmp_path / "plain.txt").write_text("".join(f"{name}\n" for name in odd))
    assert list(iter_entries(str(tmp_path / "plain.txt"))) == [(str(tmp_path / name), None) for name in odd]
    (tmp_path / "fp.csv").write_text(f"{FINGERPRINTED}\n" + "".join(f"{name}\tv{i}\n" for i, name in enumerate(odd))
                                     + "no fingerprint.jpg\nempty one.jpg\t\n")
    assert list(iter_entries(str(tmp_path / "fp.csv"))) == [
        *((str(tmp_path / name), f"v{i}") for i, name in enumerate(odd)),
        (str(tmp_path / "no fingerprint.jpg"), None), (str(tmp_path / "empty one.jpg"), None)]
    assert list(iter_source(str(tmp_path / "fp.csv")))[2] == str(tmp_path / "tab\there.jpg")


def _inventory(bucket, schema: str, rows: list[str]) -> str:
    body = gzip.compress("".join(row + "\n" for row in rows).encode())
    bucket.put_object("inv/data/0.csv.gz", body)
    files = [{"key": "inv/data/0.csv.gz", "MD5checksum": hashlib.md5(body).hexdigest()}]
    bucket.put_object("inv/manifest.json", json.dumps({"fileSchema": schema, "files": files}).encode())
    return f"oss://{bucket.bucket_name}/inv/manifest.json"


def test_oss_listings_and_inventories_give_the_etag(bucket, oss_settings):
    bucket.put_object("in/a.jpg", b"abc")
    etag = bucket.head_object("in/a.jpg").etag
    assert list(iter_entries(f"oss://{bucket.bucket_name}/in/")) == [(f"oss://{bucket.bucket_name}/in/a.jpg", etag)]
    with_etag = _inventory(bucket, "Bucket, Key, Size, LastModifiedDate, ETag",
                           [f'"src","in/a.jpg","3","2026-01-01T00:00:00Z","""{etag}"""'])
    assert list(iter_entries(with_etag)) == [("oss://src/in/a.jpg", etag)]  # quoted in the CSV, as listed here
    sized = _inventory(bucket, "Bucket, Key, Size, LastModifiedDate", ['"src","in/a.jpg","3","2026-01-01T00:00:00Z"'])
    assert list(iter_entries(sized)) == [("oss://src/in/a.jpg", "3-2026-01-01T00:00:00Z")]
    bare = _inventory(bucket, "Bucket, Key", ['"src","in/a.jpg"'])
    assert list(iter_entries(bare)) == [("oss://src/in/a.jpg", None)]


def test_shard_lists_of_every_format_read_as_written(tmp_path):
    entries = [("/in/a.jpg", "3-1"), ("/in/b c.jpg", None)]
    for fmt, data in ((shard_lists.FORMAT, shard_lists.encode(entries)),
                      (shard_lists.STRINGS, b'"/in/a.jpg"\n"/in/b c.jpg"\n'), (None, b"/in/a.jpg\n/in/b c.jpg\n")):
        job = Job("j", JobSpec("/in", str(tmp_path / str(fmt))), 0.0, fmt)
        path = Path(shard_lists.path(job, 0))
        path.parent.mkdir(parents=True)
        path.write_bytes(data)
        expected = entries if fmt == shard_lists.FORMAT else [(uri, None) for uri, _ in entries]
        assert shard_lists.read_entries(job, 0) == expected
        assert shard_lists.read(job, 0) == ["/in/a.jpg", "/in/b c.jpg"]


def _base(root: Path, records: list[dict], **summary) -> JobOutput:
    root.mkdir(parents=True)
    (root / "part-0.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return JobOutput(str(root), {"parts": ["part-0.jsonl"], "total": len(records), **summary})


def _ok(uri: str, fingerprint: str | None, **fields) -> dict:
    return {"uri": uri, "status": "ok", "labels": [], "model": "m", "model_version": None,
            "preprocess": CURRENT, "fingerprint": fingerprint, **fields}


@pytest.mark.parametrize("partition_records", [2, 1000])
def test_the_join_skips_only_unchanged_ok_records_and_keeps_listing_order(tmp_path, monkeypatch, partition_records):
    monkeypatch.setattr(incremental, "PARTITION_RECORDS", partition_records)  # 2: many partitions, merged back
    base = _base(tmp_path / "base", [
        _ok("/same", "1"), _ok("/changed", "1"), {"uri": "/error", "status": "error", "error": "x", "labels": None,
                                                  "fingerprint": "1"},
        _ok("/old-preprocess", "1", preprocess="0"), _ok("/unfingerprinted", None), _ok("/listed-without", "1"),
        _ok("/no-embedding", "1"), _ok("/same-2", "2")])
    listing = [("/new", "1"), ("/same", "1"), ("/changed", "2"), ("/error", "1"), ("/old-preprocess", "1"),
               ("/unfingerprinted", "1"), ("/listed-without", None), ("/same-2", "2"), ("/new-2", None)]
    with incremental.unchanged_skipped(iter(listing), [base], embeddings=False, preprocess=CURRENT) as (kept,
                                                                                                       skipped):
        assert list(kept) == [("/new", "1"), ("/changed", "2"), ("/error", "1"), ("/old-preprocess", "1"),
                              ("/unfingerprinted", "1"), ("/new-2", None)]
    assert skipped == 3  # /same, /same-2, and /listed-without: no fingerprint listed, the URI alone compared
    with incremental.unchanged_skipped(iter([("/no-embedding", "1")]), [base], embeddings=True,
                                       preprocess=CURRENT) as (kept, skipped):
        assert (list(kept), skipped) == ([("/no-embedding", "1")], 0)  # asked for embeddings, it has none


def test_a_chain_of_bases_is_read_newest_first(tmp_path):
    older = _base(tmp_path / "older", [_ok("/a", "1"), _ok("/b", "1")])
    newer = _base(tmp_path / "newer", [{"uri": "/a", "status": "error", "error": "x", "labels": None,
                                        "fingerprint": "1"}, _ok("/c", "1")])
    with incremental.unchanged_skipped(iter([("/a", "1"), ("/b", "1"), ("/c", "1")]), [newer, older],
                                       embeddings=False, preprocess=CURRENT) as (kept, skipped):
        assert (list(kept), skipped) == ([("/a", "1")], 2)  # /a's newest record is an error: labelled again


def _finished_job(root: Path, state: str = "succeeded", spec: dict | None = None, **summary) -> str:
    (root / "_plan").mkdir(parents=True)
    job = Job(root.name, JobSpec("/in", str(root), **(spec or {})), 0.0, shard_lists.FORMAT)
    (root / "_plan" / "job.json").write_text(json.dumps(job.to_dict()))
    body = json.dumps({"job_id": root.name, "state": state, "reason": "2 shards failed" if state == "failed" else None,
                       "model": "efficientnet_lite0", "total": 0, "parts": [], **summary})
    (root / "_SUMMARY.json").write_text(body)
    if state == "succeeded":
        (root / "_SUCCESS.json").write_text(body)
    return str(root)


def test_a_base_that_did_not_succeed_or_ran_another_model_is_refused_naming_why(tmp_path):
    spec = lambda base, **kw: JobSpec("/in", "/out", incremental_from=base, **kw)  # noqa: E731
    with pytest.raises(ConfigError, match="is not an ended job's output"):
        incremental.open_base(spec(str(tmp_path / "nothing")))
    with pytest.raises(ConfigError, match=r"that job failed \(2 shards failed\)"):
        incremental.open_base(spec(_finished_job(tmp_path / "failed", "failed")))
    good = _finished_job(tmp_path / "good")
    assert [b.root for b in incremental.open_base(spec(good))] == [good]
    with pytest.raises(ConfigError, match="model 'efficientnet_lite0' there, 'other' here"):
        incremental.open_base(spec(good, model="other"))
    with pytest.raises(ConfigError, match="model_digest None there, 'sha256:1' here; top k 5 there, 3 here"):
        incremental.open_base(spec(good, model_digest="sha256:1", top_k=3))
    pinned = _finished_job(tmp_path / "pinned", spec={"model": "oss://m/colors/model.onnx", "model_digest": "sha256:a"})
    with pytest.raises(ConfigError, match="model_digest 'sha256:a' there, 'sha256:b' here"):
        incremental.open_base(spec(pinned, model="oss://m/colors/model.onnx", model_digest="sha256:b"))
    assert incremental.open_base(spec(pinned, model="oss://m/colors/model.onnx", model_digest="sha256:a"))
    chained = _finished_job(tmp_path / "chained", incremental_from=good)
    assert [b.root for b in incremental.open_base(spec(chained))] == [chained, good]
    (Path(good) / "_plan" / "job.json").unlink()
    with pytest.raises(ConfigError, match="its job description cannot be read"):
        incremental.open_base(spec(chained))  # every base of the chain is checked


def test_the_plan_and_the_store_keep_the_skipped_count_and_a_rebuild_brings_it_back(tmp_path, store):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        (folder / name).write_bytes(name.encode())
    listed = dict(iter_entries(str(folder)))
    base = _base(tmp_path / "base", [_ok(uri, listed[uri]) for uri in sorted(listed)[:2]])
    skip = functools.partial(incremental.unchanged_skipped, chain=[base], embeddings=False, preprocess=CURRENT)
    spec = JobSpec(str(folder), str(tmp_path / "out"), incremental_from=base.root)
    sent = []
    job_id = plan_job(spec, store, lambda job, shard: sent.append(shard), skip=skip)
    root = tmp_path / "out" / job_id
    assert json.loads((root / "_plan" / "plan.json").read_text()) == {
        "total": 1, "shards": 1, "skipped": 2, "incremental_from": base.root}
    assert shard_lists.read_entries(Job.from_dict(store.job_meta(job_id)), 0) == [(str(folder / "c.jpg"),
                                                                                   listed[str(folder / "c.jpg")])]
    assert (store.progress(job_id).total, store.progress(job_id).skipped, sent) == (1, 2, [0])
    store.purge(job_id)
    rebuild(store, str(root), job_id)
    assert (store.progress(job_id).total, store.progress(job_id).skipped) == (1, 2)


# End to end, as a user runs it: the embedded default, real photos, real workers.

def _relabel(tmp_path: Path, source: Path, *args: str, **env: str) -> tuple[Path, dict, list[dict]]:
    result = visionfleet("relabel", str(source), "--output", str(tmp_path / "labels"), *args,
                         env={**embedded_env(tmp_path), **env}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    root = tmp_path / "labels" / result.stdout.strip().splitlines()[-1]
    output = JobOutput.open(str(root))
    return root, output.summary, list(output.records())


def _replace(path: Path, data: bytes) -> None:
    """New bytes, and a modification time surely later than the listing saw (a coarse clock cannot hide it)."""
    before = os.stat(path).st_mtime_ns
    path.write_bytes(data)
    os.utime(path, ns=(time.time_ns(), before + 2_000_000_000))


@pytest.mark.slow
def test_an_incremental_run_labels_exactly_the_added_and_replaced_images(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    images = distinct_jpegs(16)
    for i, data in enumerate(images[:8]):
        (folder / f"{i}.jpg").write_bytes(data)
    base, base_summary, base_records = _relabel(tmp_path, folder)
    assert base_summary["total"] == 8 and "skipped" not in base_summary
    assert all(r["fingerprint"] == f"{os.stat(r['uri']).st_size}-{os.stat(r['uri']).st_mtime_ns}"
               for r in base_records)

    added = [folder / f"new {i}.jpg" for i in range(5)]
    for path, data in zip(added, images[8:13]):
        path.write_bytes(data)
    replaced = [folder / f"{i}.jpg" for i in (1, 4, 6)]
    for path, data in zip(replaced, images[13:16]):
        _replace(path, data)
    new, summary, records = _relabel(tmp_path, folder, "--incremental-from", os.path.relpath(base, tmp_path))
    assert sorted(r["uri"] for r in records) == sorted(str(p) for p in added + replaced)
    assert all(r["status"] == "ok" for r in records)
    assert (summary["total"], summary["skipped"], summary["incremental_from"]) == (8, 5, str(base))
    status = visionfleet("status", summary["job_id"], "--json", env=embedded_env(tmp_path))
    assert json.loads(status.stdout)["skipped"] == 5
    line = visionfleet("status", summary["job_id"], env=embedded_env(tmp_path)).stdout
    assert "succeeded 8/8 done, 0 errors, 5 skipped as unchanged" in line, line

    # The union, as the README reads it: the new run's records win over the base's for the same URI.
    latest = {r["uri"]: r for r in JobOutput.open(str(new)).records()}
    table = [*latest.values(), *(r for r in JobOutput.open(str(base)).records() if r["uri"] not in latest)]
    assert sorted(r["uri"] for r in table) == sorted(str(p) for p in folder.iterdir())
    assert all(r["fingerprint"] == f"{os.stat(r['uri']).st_size}-{os.stat(r['uri']).st_mtime_ns}" for r in table)

    # From the incremental run: its base comes along, so nothing is labelled again.
    _, again, records = _relabel(tmp_path, folder, "--incremental-from", str(new))
    assert (again["state"], again["total"], again["skipped"], records) == ("succeeded", 0, 13, [])

    # Another decode makes other pixels: everything is labelled again, never mixed with the default's.
    _, pillow, records = _relabel(tmp_path, folder, "--incremental-from", str(new), VISIONFLEET_DECODE="cpu")
    assert (pillow["total"], pillow["skipped"], {r["preprocess"] for r in records}) == (13, 0, {VERSIONS["cpu"]})


@pytest.mark.slow
def test_relabel_refuses_a_base_it_cannot_stand_on_with_exit_2(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(distinct_jpegs(1)[0])
    base, _, _ = _relabel(tmp_path, folder)
    env = embedded_env(tmp_path)
    out = ["--output", str(tmp_path / "labels")]
    other = visionfleet("relabel", str(folder), *out, "--top-k", "3", "--incremental-from", str(base), env=env)
    assert other.returncode == 2 and "top k 5 there, 3 here" in other.stderr and "Traceback" not in other.stderr
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    failed = visionfleet("relabel", str(folder), *out, "--max-error-rate", "0", env=env, cwd=tmp_path)
    assert failed.returncode == 1, failed.stderr
    failed_root = tmp_path / "labels" / failed.stdout.strip().splitlines()[-1]
    refused = visionfleet("relabel", str(folder), *out, "--incremental-from", str(failed_root), env=env)
    assert refused.returncode == 2 and "that job failed" in refused.stderr, refused.stderr
    assert sorted(p.name for p in (tmp_path / "labels").iterdir()) == sorted([base.name, failed_root.name])


@pytest.mark.slow
def test_an_incremental_run_over_oss_compares_etags(tmp_path, bucket, oss_server):
    from tests.conftest import oss_env

    images = distinct_jpegs(5)
    for i, data in enumerate(images[:3]):
        bucket.put_object(f"in/{i}.jpg", data)
    env = {**embedded_env(tmp_path), **oss_env(oss_server)}
    source, out = f"oss://{bucket.bucket_name}/in/", ["--output", str(tmp_path / "labels")]
    first = visionfleet("relabel", source, *out, env=env)
    assert first.returncode == 0, first.stderr
    base = tmp_path / "labels" / first.stdout.strip().splitlines()[-1]
    bucket.put_object("in/1.jpg", images[3])  # replaced: a new ETag
    bucket.put_object("in/9.jpg", images[4])
    second = visionfleet("relabel", source, *out, "--incremental-from", str(base), env=env)
    assert second.returncode == 0, second.stderr
    output = JobOutput.open(str(tmp_path / "labels" / second.stdout.strip().splitlines()[-1]))
    records = {r["uri"].rsplit("/", 1)[1]: r["fingerprint"] for r in output.records()}
    assert records == {name: bucket.head_object(f"in/{name}").etag for name in ("1.jpg", "9.jpg")}
    assert output.summary["skipped"] == 2


@pytest.mark.slow
def test_an_incremental_run_of_a_model_package_skips_by_its_digest(tmp_path):
    """The base is judged by the package as it is now: the same bytes skip what they labelled, a package
    changed since (another digest) is refused, naming the difference, before anything is written."""
    from tests.model_packages import colors_files, write_files

    folder = tmp_path / "in"
    folder.mkdir()
    for i, data in enumerate(distinct_jpegs(3)):
        (folder / f"{i}.jpg").write_bytes(data)
    model = ["--model", write_files(tmp_path / "colors", colors_files("1"))]
    base, summary, _ = _relabel(tmp_path, folder, *model)
    assert summary["model_digest"] is not None
    (folder / "3.jpg").write_bytes(distinct_jpegs(4)[3])
    _, again, records = _relabel(tmp_path, folder, *model, "--incremental-from", str(base))
    assert (again["total"], again["skipped"], again["model_digest"]) == (1, 3, summary["model_digest"])
    assert [Path(r["uri"]).name for r in records] == ["3.jpg"]

    write_files(tmp_path / "colors", colors_files("2", inverted=True))
    changed = visionfleet("relabel", str(folder), "--output", str(tmp_path / "labels"), *model,
                          "--incremental-from", str(base), env=embedded_env(tmp_path), cwd=tmp_path)
    assert changed.returncode == 2 and "model_digest" in changed.stderr, changed.stderr
    assert len(list((tmp_path / "labels").iterdir())) == 2  # nothing written for the refused run

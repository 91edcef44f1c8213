"""The run report's timeline: buckets that fit the run, a curve whose mean is the headline rate, old ledgers."""
import pytest

from visionfleet.checkpoints.job_book import Progress
from visionfleet.reports.run import run_report
from visionfleet.reports.run_page import render
from visionfleet.reports.timeline import MOST_POINTS, bucket_s, timeline

START = 1_764_700_000.4  # epoch seconds, not on a second or minute boundary


def ledger_of(commits: dict[float, int], *, seconds: bool = True) -> dict:
    """What the store keeps for commits {epoch time: images}: minute buckets, and second buckets if ``seconds``."""
    minutes, per_second = {}, {}
    for at, images in commits.items():
        minutes[int(at // 60 * 60)] = minutes.get(int(at // 60 * 60), 0) + images
        per_second[int(at)] = per_second.get(int(at), 0) + images
    return {"timeline": minutes, **({"seconds": per_second} if seconds else {})}


def area(result: dict, span: float) -> float:
    """Images under the curve: each point's rate over its bucket (the last one ends at the run's end)."""
    points = result["timeline"]
    ends = [p["offset_s"] for p in points[1:]] + [span]
    return sum(p["images_per_s"] * (end - p["offset_s"]) for p, end in zip(points, ends))


def test_a_twenty_second_job_is_drawn_by_the_second_and_its_mean_is_the_headline_rate():
    commits = {START + 0.3 + 0.5 * i: 8 for i in range(40)}  # 320 images, a commit every half second
    end = max(commits)
    result = timeline(ledger_of(commits), START, end)
    points = result["timeline"]
    assert result["timeline_bucket_s"] == 1 and len(points) >= 5
    assert points[0]["offset_s"] == 0 and result["timeline_start"] == round(START, 3)
    assert [p["offset_s"] for p in points] == list(range(len(points)))  # empty buckets too: no gap hidden
    assert sum(p["images"] for p in points) == 320
    assert area(result, end - START) / (end - START) == pytest.approx(320 / (end - START), rel=1e-3)


@pytest.mark.parametrize("span", [20.4, 20.6])
def test_the_last_bucket_ends_at_the_run_s_end_within_half_a_bucket(span):
    commits = {START + i + 0.5: 10 for i in range(int(span))} | {START + span: 10}
    result = timeline(ledger_of(commits), START, START + span)
    points = result["timeline"]
    last_width = span - points[-1]["offset_s"]
    assert 0.5 <= last_width < 1.5
    assert points[-1]["images_per_s"] == pytest.approx(points[-1]["images"] / last_width, abs=1e-3)
    assert area(result, span) == pytest.approx(sum(commits.values()), rel=1e-3)


@pytest.mark.parametrize("span", [150, 600, 3599, 3601, 5 * 3600, 3 * 86400, 30 * 86400])
def test_a_longer_run_gets_coarser_buckets_between_48_and_120_points(span):
    finest = 1 if span <= 3600 else 60  # the ledger keeps seconds for an hour
    size = bucket_s(span, finest)
    assert 48 <= span / size <= MOST_POINTS, size
    assert (size < 60) == (span <= 3600)


def test_an_old_ledger_or_one_past_its_seconds_is_drawn_by_the_minute():
    commits = {START + 30 * i: 5 for i in range(240)}  # two hours, a commit every 30 s
    end = max(commits)
    old = timeline(ledger_of(commits, seconds=False), START, end)
    assert old["timeline_bucket_s"] == 60 and sum(p["images"] for p in old["timeline"]) == 1200
    assert area(old, end - START) == pytest.approx(1200, rel=5e-3)  # rates are rounded to 3 decimals
    capped = ledger_of(commits)
    capped["seconds"] = dict(sorted(capped["seconds"].items())[:120])  # the store stopped keeping seconds
    assert timeline(capped, START, end) == old
    short_old = timeline(ledger_of({START + 5: 10, START + 15: 10}, seconds=False), START, START + 15)
    assert short_old["timeline_bucket_s"] == 60 and short_old["timeline"] == [
        {"offset_s": 0, "images": 20, "images_per_s": round(20 / 15, 3)}]


def test_a_run_without_a_commit_has_no_points():
    assert timeline({"timeline": {}, "seconds": {}}, START, START + 10)["timeline"] == []


@pytest.mark.parametrize(("span", "seconds", "axis", "bucket"), [
    (20, True, "seconds from the start", "1-second buckets"),
    (2 * 3600, True, "minutes from the start", "1-minute buckets"),  # past the seconds kept: by the minute
    (5 * 86400, False, "hours from the start", "1-hour buckets")])
def test_the_page_draws_the_axis_in_the_bucket_s_unit(span, seconds, axis, bucket):
    commits = {START + span * i / 50: 10 for i in range(1, 51)}
    ledger = {**ledger_of(commits, seconds=seconds), "workers": {}, "redone": 0, "takeovers": 0, "drains": 0,
              "spot_notices": 0}
    if seconds and span > 3600:
        ledger["seconds"] = dict(list(ledger["seconds"].items())[:10])  # the store kept its first hour only
    progress = Progress("j", "succeeded", True, 500, 1, 1, 500, 0, START - 2, START, START + span)
    report = run_report(progress, ledger, [])
    assert report["images_per_s"] == round(500 / span, 3) and report["timeline"][0]["offset_s"] == 0
    page = render(report)
    assert f"in {bucket}, over {axis}" in page

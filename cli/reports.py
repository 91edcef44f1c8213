"""``visionfleet diff`` and ``visionfleet report``: files into a local folder or an ``oss://`` prefix."""
import tempfile
from collections.abc import Callable
from pathlib import Path

from visionfleet.pipeline.location import Location
from visionfleet.pipeline.words import count


def into(report: str, build: Callable[[Path], object]):
    """Run ``build`` on a local folder that ends up as ``report``: itself, or uploaded to OSS."""
    place = Location.parse(report)
    if not place.oss:
        folder = Path(report)
        if folder.exists() and not folder.is_dir():
            from visionfleet.pipeline.errors import VisionfleetError

            raise VisionfleetError(f"--output {report} is a file; give a folder for the report")
        return build(folder)
    with tempfile.TemporaryDirectory(prefix="visionfleet-report-") as tmp:
        result = build(Path(tmp))
        for path in sorted(Path(tmp).iterdir()):
            place.storage.write(str(place.child(path.name)), path.read_bytes())
        return result


def run_diff(old: str, new: str, report: str, *, sample: int | None, thumbnails: bool) -> list[str]:
    """Lines to print."""
    from visionfleet.reports.diff import diff
    from visionfleet.reports.diff_page import render
    from visionfleet.reports.outputs import JobOutput

    before, after = JobOutput.open(old), JobOutput.open(new)

    def build(folder: Path) -> dict:
        result = diff(before, after, folder, sample=sample)
        (folder / "report.html").write_text(render(result, folder / "changed.jsonl", thumbnails=thumbnails),
                                            encoding="utf-8")
        return result

    result = into(report, build)
    t = result["totals"]
    rate = t["changed_top1_rate"]
    failed = [f"warning: the {side} job failed: {output.failed}" for side, output in (("old", before), ("new", after))
              if output.failed]
    return failed + [
        f"{count(t['both'], 'image')} in both runs, {t['only_old']} only in the old, {t['only_new']} only in "
        f"the new; errors {t['errors_old']} old, {t['errors_new']} new",
        f"top-1 changed for {t['changed_top1']} of {t['both_ok']}" + (f" ({rate:.2%})" if rate is not None else ""),
        f"report: {_join(report, 'report.html')}, {_join(report, 'changed.jsonl')} "
        f"({count(result['changed_written'], 'row')}, most confident first), {_join(report, 'diff.json')}"]


def run_report(store, progress, report: str, *, price_per_hour: float | None, prices: str | None,
               instance_type: str | None) -> list[str]:
    """Lines to print."""
    import json

    from visionfleet.reports.run import prices_from, run_report as build_report
    from visionfleet.reports.run_page import render

    result = build_report(progress, store.ledger(progress.job_id), prices_from(prices, instance_type, price_per_hour))

    def build(folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "report.json").write_text(json.dumps(result, indent=1))
        (folder / "report.html").write_text(render(result), encoding="utf-8")

    into(report, build)
    rate = result["images_per_s"]
    lines = [f"{result['job_id']}: {result['state']}, {count(result['images'], 'image')}, {result['wall_s']:.1f} s "
             "from creation to the last commit" + (f", {rate:.1f} images/s while labelling" if rate else ""),
             f"{result['busy_worker_s']:.0f} busy worker-seconds, {count(result['redone_images'], 'image')} redone, "
             f"{count(result['takeovers'], 'takeover')}, {count(result['drains'], 'drain')}, "
             f"{count(result['spot_notices'], 'spot notice')}"]
    for cost in result["cost"]:
        per_m = [f"{what} ${cost[key]:.4f}/M images" for what, key in (("spot", "spot_per_million_images"),
                 ("on-demand", "on_demand_per_million_images")) if cost[key] is not None]
        lines.append(f"{cost['price']}: {cost['machine_hours']:.4g} machine-hours"
                     + (f"; {', '.join(per_m)}" if per_m else ""))
    lines.append(f"report: {_join(report, 'report.html')}, {_join(report, 'report.json')}")
    return lines


def _join(report: str, name: str) -> str:
    return str(Location.parse(report).child(name))

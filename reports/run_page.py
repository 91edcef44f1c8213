"""``report.html`` of a run: the numbers, images per second over time, each machine's share, the cost."""
from visionfleet.pipeline.words import count
from visionfleet.reports import charts
from visionfleet.reports.page import cards, figure, page, paragraph, section, table


def render(report: dict) -> str:
    sections = [
        cards([("images", "images", report["images"]), ("images_per_s", "images/s", report["images_per_s"]),
               ("wall_s", "seconds, submitted to done", report["wall_s"]),
               ("busy_worker_s", "busy worker-seconds", report["busy_worker_s"]),
               ("redone_images", "images redone", report["redone_images"]),
               ("takeovers", "shard takeovers", report["takeovers"]), ("drains", "drains", report["drains"]),
               ("spot_notices", "spot notices", report["spot_notices"])]),
        section("Images per second over time", _throughput(report)),
        section("Cost", _cost(report)),
        section("Machines", table(
            ["machine", "images", "share", "busy seconds", "span seconds"],
            [[w["worker"], w["images"], w["share"], w["busy_s"], w["span_s"]] for w in report["workers"]],
            [[None, f"workers.{i}.images", f"workers.{i}.share", None, None] for i in range(len(report["workers"]))])),
        paragraph("Redone: images a worker labelled but had not committed when it died (its last heartbeat), "
                  "labelled again by the worker that took its shard over. A drain commits first: nothing redone."),
    ]
    return page(f"Run {report['job_id']}", f"{report['state']}: {count(report['images'], 'image')}, "
                f"{count(report['errors'], 'error')}", sections)


def _throughput(report: dict) -> str:
    """The timeline as steps, each bucket as wide as it is (the last may differ), in the unit of its buckets."""
    timeline, size = report["timeline"], report["timeline_bucket_s"]
    if not timeline:
        return paragraph("No commit was recorded.")
    unit, per = next((u, s) for u, s in (("hours", 3600), ("minutes", 60), ("seconds", 1)) if size >= s)
    xs = [t["offset_s"] / per for t in timeline] + [report["labelling_s"] / per]
    ys = [t["images_per_s"] or 0 for t in timeline]
    svg = charts.line(xs, ys + ys[-1:], xlabel=f"{unit} from the start", ylabel="images/s",
                      mean=report["images_per_s"], mean_label="images/s over the run")
    return figure(svg, f"images labelled per second, in {_bucket(size)} buckets, over {unit} from the start; "
                       "dashed: the mean over the run (images/s above)")


def _bucket(size: int) -> str:
    for unit, per in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if size % per == 0:
            return f"{size // per}-{unit}"
    return f"{size}-second"


def _cost(report: dict) -> str:
    rows = report["cost"]
    if not rows:
        return paragraph(f"{report['machine_s'] / 3600:.3f} machine-hours. Give --price-per-hour, or --prices FILE "
                         "(and --instance-type), for $ per million images.")
    return table(
        ["price", "machine-hours", "spot $/h", "on-demand $/h", "spot $/M images", "on-demand $/M images",
         "spot $", "on-demand $"],
        [[c["price"], c["machine_hours"], c["spot_per_hour"], c["on_demand_per_hour"], c["spot_per_million_images"],
          c["on_demand_per_million_images"], c["spot_total"], c["on_demand_total"]] for c in rows],
        [[None, f"cost.{i}.machine_hours", None, None, f"cost.{i}.spot_per_million_images",
          f"cost.{i}.on_demand_per_million_images", None, None] for i in range(len(rows))])

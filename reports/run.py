"""What a run cost: time, speed over time, work redone, and $ per million images.

Built from the job's ledger in the state store, which the workers keep as
they commit: images per second and per minute (drawn in buckets that fit
the run: ``timeline``), and per machine the images, the seconds
its processes spent on shards and the span it worked on the job; the
images a dead worker had labelled but not committed (redone by whoever
took its shard over), takeovers, drains and spot notices.

Cost counts each machine for the span it worked on the job (first shard
started to last commit), at the price of an hour of it: what a fleet
started for the job and stopped after it pays, idle gaps included.

``RunReport`` is the hook that writes it as ``_REPORT.json`` when a job succeeds.
"""
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from visionfleet.checkpoints.hooks import Hook
from visionfleet.checkpoints.state import StateStore
from visionfleet.pipeline import layout
from visionfleet.pipeline.envvars import env_float, env_str
from visionfleet.pipeline.errors import ConfigError
from visionfleet.pipeline.job import Job
from visionfleet.pipeline.storage import storage_for
from visionfleet.reports.timeline import timeline

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Price:
    """$ per machine-hour; ``on_demand`` is what the same machine costs off the spot market."""

    name: str
    spot: float | None
    on_demand: float | None


def prices_from(path: str | None, instance_type: str | None, per_hour: float | None) -> list[Price]:
    """The prices a report shows: ``--price-per-hour``, and/or ``--instance-type``'s row of a price table.

    A price table is JSON: ``{"ecs.gn7i-c8g1.2xlarge": {"on_demand": 1.21, "spot": 0.36}, ...}``.
    """
    prices = [Price("--price-per-hour", per_hour, None)] if per_hour is not None else []
    if path is None:
        if instance_type is not None:
            raise ConfigError("--instance-type needs --prices FILE, the table it is looked up in")
        return prices
    try:
        table = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the price table {path} ({exc}); give a JSON file like "
                          '{"ecs.gn7i-c8g1.2xlarge": {"on_demand": 1.21, "spot": 0.36}}') from None
    chosen = [instance_type] if instance_type else sorted(table)
    for name in chosen:
        row = table.get(name)
        if not isinstance(row, dict):
            raise ConfigError(f"{name!r} is not in the price table {path}; it has {', '.join(sorted(table))}")
        prices.append(Price(name, _dollars(row.get("spot")), _dollars(row.get("on_demand"))))
    return prices


def prices_from_env() -> list[Price]:
    """``VISIONFLEET_PRICE_PER_HOUR``: the fleet's $ per machine-hour, for the ``_REPORT.json`` of every job;
    read once, at the edge (a worker's settings, a command), and given to ``RunReport``."""
    if env_str("VISIONFLEET_PRICE_PER_HOUR") is None:
        return []
    return [Price("VISIONFLEET_PRICE_PER_HOUR", env_float("VISIONFLEET_PRICE_PER_HOUR", 0.0, minimum=0.0), None)]


def _dollars(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and value >= 0 else None


def run_report(progress, ledger: dict, prices: list[Price]) -> dict:
    """The report of a job (its ``Progress`` and ledger), with a cost row per price."""
    images = progress.done
    started = progress.started_at or progress.created_at
    ended = progress.updated_at or started
    workers = ledger["workers"]
    machine_s = sum(max(w["last_at"] - w["first_at"], 0.0) for w in workers.values())
    busy_s = sum(w["busy_s"] for w in workers.values())
    return {
        "job_id": progress.job_id, "state": progress.state, "images": images, "ok": progress.ok,
        "errors": progress.errors,
        "wall_s": round(ended - progress.created_at, 3),
        "labelling_s": round(ended - started, 3),
        "images_per_s": round(images / (ended - started), 3) if ended > started else None,
        **timeline(ledger, started, ended),
        "busy_worker_s": round(busy_s, 3),
        "machine_s": round(machine_s, 3),
        "redone_images": ledger["redone"], "takeovers": ledger["takeovers"], "drains": ledger["drains"],
        "spot_notices": ledger["spot_notices"],
        "workers": [{"worker": host, "images": w["images"], "share": round(w["images"] / images, 6) if images else None,
                     "busy_s": round(w["busy_s"], 3), "span_s": round(max(w["last_at"] - w["first_at"], 0.0), 3)}
                    for host, w in sorted(workers.items(), key=lambda kv: -kv[1]["images"])],
        "cost": [_cost(p, machine_s, images) for p in prices],
    }


def _cost(price: Price, machine_s: float, images: int) -> dict:
    hours = machine_s / 3600

    def per_million(rate: float | None) -> float | None:
        return round(hours * rate / images * 1e6, 4) if rate is not None and images else None

    return {"price": price.name, "spot_per_hour": price.spot, "on_demand_per_hour": price.on_demand,
            "machine_hours": round(hours, 4),
            "spot_total": round(hours * price.spot, 4) if price.spot is not None else None,
            "on_demand_total": round(hours * price.on_demand, 4) if price.on_demand is not None else None,
            "spot_per_million_images": per_million(price.spot),
            "on_demand_per_million_images": per_million(price.on_demand)}


class RunReport(Hook):
    """``_REPORT.json`` beside ``_SUCCESS.json`` when a job succeeds, priced at ``prices`` (``prices_from_env``);
    `visionfleet report` writes the same with other prices, and a page (and again if this one failed)."""

    def __init__(self, prices: list[Price]) -> None:
        self.prices = prices

    def on_job_end(self, store: StateStore, job_id: str, state: str) -> None:
        if state != "succeeded":
            return
        root = Job.from_dict(store.job_meta(job_id)).root
        try:
            report = run_report(store.progress(job_id), store.ledger(job_id), self.prices)
            storage_for(root).write(layout.child(root, layout.REPORT), json.dumps(report, indent=1).encode())
        except Exception as exc:  # the job has succeeded: say how to get the report it lacks
            log.warning("run report not written; `visionfleet report` makes it", extra={
                "job_id": job_id, "error": f"{type(exc).__name__}: {exc}"})

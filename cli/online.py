"""``visionfleet classify`` and ``visionfleet stats``."""
from dataclasses import replace

from visionfleet.broker.settings import BrokerSettings
from visionfleet.pipeline.words import count


def classify_uris(settings: BrokerSettings, uris: list[str], *, timeout: float, model: str | None = None) -> list[dict]:
    """``model``: a spec the workers allow; none, their own model."""
    if settings.embedded:
        return _classify_here(settings, uris, model)
    from visionfleet.broker.client import VisionClient

    return VisionClient(broker=settings).classify_many(uris, timeout=timeout, model=model)


def _classify_here(broker: BrokerSettings, uris: list[str], model: str | None) -> list[dict]:
    """No fleet configured: load the model in this process, like an embedded worker would (a model
    named here is this command's own, unless VISIONFLEET_MODELS lists what may load)."""
    from visionfleet.workers.labeller_pool import LabellerPool
    from visionfleet.workers.settings import Settings

    settings = Settings.from_env(broker)
    if model is not None and not settings.access.open_models:
        settings.access.check_model(model)
    load = replace(settings.load, decode_processes=0)  # a few images: decode processes would take longer to start
    labeller = LabellerPool(settings.runtime, load, "cli").default(model or settings.model)
    return list(labeller.label(uris, settings.online.top_k))


def fleet_stats(settings: BrokerSettings) -> dict:
    from visionfleet.broker.client import VisionClient
    from visionfleet.broker.routes import ROLES, queue_name
    from visionfleet.cli.reach import reachable_store

    beats = reachable_store(settings).workers()  # a quick ping first: no minute of retries
    client = VisionClient(broker=settings)
    queues = [queue_name(role, settings.namespace) for role in ROLES]
    return {
        "queues": {q: client.queue_size(q) for q in queues},
        "online_max_backlog": client.settings.max_backlog,
        "workers": worker_instances(beats),
        "metrics_ports": sorted({f"{w.get('host')}:{w['metrics_port']}" for w in beats if w.get("metrics_port")}),
        **client.metrics.snapshot(),
    }


def worker_instances(beats: list[dict]) -> dict:
    """The live bulk workers counted as ``scale`` and ``/metrics`` count them: one per ``visionfleet worker``."""
    from visionfleet.checkpoints.worker_registry import instance_of

    instances = {instance_of(w) for w in beats}
    busy = {instance_of(w) for w in beats if w.get("job_id")}
    return {"unit": "worker instance", "live": len(instances), "busy": len(busy),
            "hosts": len({(host, pidns) for _, host, pidns in instances}), "processes": len(beats),
            "names": sorted(name for name, _, _ in instances)}


def stats_table(snapshot: dict) -> list[str]:
    """``visionfleet stats`` for people: one line per part of the fleet."""
    counters = snapshot.get("counters")

    def row(*names: str) -> str:
        return ", ".join(f"{name.split('_', 1)[1].replace('_', ' ')} {counters.get(name, 0)}" for name in names)

    if "counters" not in snapshot:  # no Redis to keep them in
        return [f"queues   {snapshot['queues']}",
                "counters are kept only by a fleet (VISIONFLEET_BROKER_URL=redis://...)"]
    sizes = " ".join(f"{size}x{n}" for size, n in sorted(snapshot["online_batch_sizes"].items()))
    return [
        "queues   " + ", ".join(f"{q} {n} waiting" for q, n in snapshot["queues"].items()),
        f"workers  {_workers_line(snapshot['workers'])}; metrics on {', '.join(snapshot['metrics_ports']) or 'no port'}",
        "bulk     " + row("bulk_images_ok", "bulk_images_error", "bulk_commits", "bulk_shards_done",
                          "bulk_shard_takeovers"),
        "online   " + row("online_requests", "online_rejected", "online_batches")
        + f", backlog bound {snapshot['online_max_backlog']}",
        "batches  " + (sizes or "none yet") + "  (online, size x count)",
    ]


def _workers_line(workers: dict) -> str:
    """``2 worker instances live on 1 host (w1@vm, w2@vm), 1 on a shard``: the unit ``scale`` counts."""
    live, hosts = workers["live"], workers["hosts"]
    names = f" ({', '.join(workers['names'])})" if workers["names"] else ""
    return f"{count(live, 'worker instance')} live on {count(hosts, 'host')}{names}, {workers['busy']} on a shard"

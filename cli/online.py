"""``visionfleet classify`` and ``visionfleet stats``."""
from visionfleet.broker.settings import BrokerSettings


def classify_uris(uris: list[str], *, timeout: float) -> list[dict]:
    if BrokerSettings.from_env().embedded:
        return _classify_here(uris)
    from visionfleet.broker.client import VisionClient

    return VisionClient().classify_many(uris, timeout=timeout)


def _classify_here(uris: list[str]) -> list[dict]:
    """No fleet configured: load the model in this process, like an embedded worker would."""
    from visionfleet.pipeline.engines import RuntimeSettings
    from visionfleet.pipeline.labeller import LoadSettings
    from visionfleet.workers.labellers import Labellers
    from visionfleet.workers.online import OnlineSettings
    from visionfleet.workers.process import default_model

    labeller = Labellers(RuntimeSettings.from_env(), LoadSettings.from_env(), "cli").default(default_model())
    return list(labeller.label(uris, OnlineSettings.from_env().top_k))


def fleet_stats() -> dict:
    from visionfleet.broker.routes import BULK_QUEUE, ONLINE_QUEUE
    from visionfleet.broker.client import VisionClient

    client = VisionClient()
    return {
        "queues": {q: client.queue_size(q) for q in (ONLINE_QUEUE, BULK_QUEUE)},
        "online_max_backlog": client.settings.max_backlog,
        **client.metrics.snapshot(),
    }

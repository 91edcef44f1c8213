"""``visionfleet health`` and ``visionfleet scale``: a worker's probe, and the fleet's size signal."""
import time
import urllib.error
import urllib.request

from visionfleet.pipeline.errors import VisionfleetError
from visionfleet.pipeline.words import count

PROBE_TIMEOUT_S = 3


def probe(ready: bool) -> tuple[bool, str]:
    """(answered 200, what it said) from this machine's worker: ``/readyz`` or ``/healthz``."""
    from visionfleet.workers.exporter import ExporterSettings

    settings = ExporterSettings.from_env()
    if settings.port is None:
        raise VisionfleetError("VISIONFLEET_METRICS_PORT is off, so the worker serves no probe; "
                               "set it (default 9808) for the worker and for this command")
    host = "127.0.0.1" if settings.addr in ("0.0.0.0", "") else settings.addr
    url = f"http://{host}:{settings.port}/{'readyz' if ready else 'healthz'}"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # a probe never goes through a proxy
    try:
        with opener.open(url, timeout=PROBE_TIMEOUT_S) as reply:
            return True, reply.read(200).decode(errors="replace").strip()
    except urllib.error.HTTPError as exc:
        return False, exc.read(200).decode(errors="replace").strip() or f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return False, f"no worker answers on {url} ({reason}); is `visionfleet worker` running here?"


def scale(settings) -> dict:
    """The autoscaling decision and what it was made from; ``settings``: the command's ``BrokerSettings``."""
    from visionfleet.broker.celery_app import make_app
    from visionfleet.broker.fleet import look
    from visionfleet.broker.scaling import Policy, decide
    from visionfleet.cli.reach import check_broker, reachable_store

    if settings.embedded:
        raise VisionfleetError("scale sizes a fleet, and none is set: the embedded default starts its own "
                               "workers. Set VISIONFLEET_BROKER_URL=redis://... to the fleet's broker")
    policy = Policy.from_env()
    store = reachable_store(settings)
    app = make_app(settings)
    check_broker(app)
    fleet, depths = look(store, app, settings.namespace)
    decision = decide(fleet, policy, time.time())
    queues = {role: {"waiting": depth.waiting, "claimed": depth.claimed} for role, depth in depths.items()}
    return {**decision.as_dict(), "unit": "worker instance", "min_workers": policy.min_workers, "max_workers": policy.max_workers,
            "target_finish_s": policy.target_finish_s, "queues": queues}


def scale_line(answer: dict) -> str:
    rate = answer["images_per_worker_s"]
    return (f"desired worker instances {answer['desired_workers']} (now {answer['workers']}, "
            f"{answer['busy_workers']} on a shard; {count(answer['backlog_images'], 'image')} left, "
            f"{count(answer['online_backlog'], 'online request')} waiting, "
            f"{'rate not measured yet' if rate is None else f'{rate} images/s per worker'}): {answer['reason']}")

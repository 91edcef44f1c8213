"""A worker's HTTP endpoint on ``VISIONFLEET_METRICS_PORT``: ``/metrics``, ``/healthz``, ``/readyz``.

``visionfleet worker`` serves it from its own small process, above the
Celery workers it starts: their pool processes write their metrics into one
``PROMETHEUS_MULTIPROC_DIR``, summed up here, and no listening socket is
ever inherited by a forked pool process.

- ``/healthz``: 200 while this process lives.
- ``/readyz``: 200 once every pool process has its model loaded and warmed
  and the broker answers; 503 before, and from the first sign of a drain.
- ``/metrics``: the processes' metrics (``pipeline/process_metrics.py``) and the
  fleet's, read from Redis: queue backlog, images left, desired workers.
  The fleet ones are the same on every worker: aggregate them with ``max``.
"""
import atexit
import errno
import logging
import os
import re
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from visionfleet.pipeline.envvars import env_str
from visionfleet.pipeline.errors import ConfigError

log = logging.getLogger(__name__)

DEFAULT_PORT = 9808
DEFAULT_PORTS = f"{DEFAULT_PORT}-{DEFAULT_PORT + 31}"  # a machine's workers take the first free one each
# Set by `visionfleet worker` for the processes under it: the port it serves their metrics on (for `stats`).
SERVED_PORT_ENV = "VISIONFLEET_METRICS_SERVED_PORT"
BROKER_CHECK_EVERY_S = 5.0
FLEET_CACHE_S = 10.0  # a scrape reads the fleet from Redis at most this often per worker
_PID_FILE = re.compile(r"_(\d+)\.db$")


@dataclass(frozen=True)
class ExporterSettings:
    """The ports to serve on: the first free one of ``port``..``last``, so that several workers
    share a machine (the default range); a single port is that port or an exit."""

    port: int | None  # None: off
    addr: str = "0.0.0.0"
    last: int | None = None  # None: ``port`` alone

    @property
    def ports(self) -> range:
        return range(self.port, (self.last or self.port) + 1) if self.port is not None else range(0)

    @classmethod
    def from_env(cls) -> "ExporterSettings":
        raw = env_str("VISIONFLEET_METRICS_PORT", DEFAULT_PORTS)
        addr = env_str("VISIONFLEET_METRICS_ADDR", "0.0.0.0")
        if raw.lower() in ("off", "none"):
            return cls(None, addr)
        first, dash, last = raw.partition("-")
        ports = [int(p) for p in (first, last) if p.isdigit() and 1 <= int(p) <= 65535]
        if len(ports) != (2 if dash else 1) or ports[-1] < ports[0]:
            raise ConfigError(f"VISIONFLEET_METRICS_PORT={raw!r} is not a port; set a number from 1 to 65535, "
                              f"a range such as {DEFAULT_PORTS} (the first free one), or off (default {DEFAULT_PORTS})")
        return cls(ports[0], addr, ports[-1] if dash else None)

    def __str__(self) -> str:
        return f"{self.addr}:{self.port}" + (f"-{self.last}" if self.last is not None else "")


def share_metrics() -> Path:
    """A fresh folder for this worker's processes to write their metrics into; call it before
    ``prometheus_client`` is first imported here, and pass the environment on to them."""
    path = Path(tempfile.mkdtemp(prefix="visionfleet-metrics-"))
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def forget_dead_processes(path: Path) -> None:
    """Drop the live gauges of processes that are gone (a pool process killed and replaced):
    their counters stay, counted once."""
    from prometheus_client import multiprocess

    from visionfleet.workers.heartbeat import alive

    pids = {int(m.group(1)) for f in path.glob("*.db") if (m := _PID_FILE.search(f.name))}
    for pid in pids:
        if not alive(pid):
            multiprocess.mark_process_dead(pid, str(path))


class Exporter:
    """Serves the endpoint for ``expected`` pool processes of the worker processes under this one."""

    def __init__(self, settings: ExporterSettings, path: Path, expected: int, app, fleet) -> None:
        """``app``: the workers' Celery app, whose broker readiness waits for; ``fleet``: their ``FleetCollector``."""
        from prometheus_client import CollectorRegistry
        from prometheus_client.multiprocess import MultiProcessCollector

        self.settings, self.path, self.expected, self.app = settings, path, expected, app
        self.stopping = False  # set at SIGTERM to the process above the workers, or once a drain is seen
        self._broker_ok_at = 0.0
        self._processes = MultiProcessCollector(None, str(path))  # also read alone, for readiness
        self.registry = CollectorRegistry()
        self.registry.register(self._processes)
        self.registry.register(fleet)
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        self._server = self._bind()
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True, name="metrics-http").start()
        threading.Thread(target=self._watch_broker, daemon=True, name="broker-check").start()
        log.info("serving metrics and probes", extra={"addr": self.settings.addr, "port": self.port,
                                                      "paths": ["/metrics", "/healthz", "/readyz"]})

    @property
    def port(self) -> int | None:
        """The port it serves on, once started."""
        return self._server.server_address[1] if self._server is not None else None

    def _bind(self) -> ThreadingHTTPServer:
        """On the first free port of the settings' range; any other failure ends the search."""
        for port in self.settings.ports:
            try:
                return ThreadingHTTPServer((self.settings.addr, port), _handler(self))
            except OSError as exc:
                failure = exc
                if exc.errno != errno.EADDRINUSE:
                    break
        why = "every port is taken" if failure.errno == errno.EADDRINUSE and self.settings.last else failure.strerror
        raise ConfigError(f"cannot serve metrics on {self.settings} ({why}); "
                          f"set VISIONFLEET_METRICS_PORT to a free port, or off (a range such as {DEFAULT_PORTS} "
                          "takes the first free one)")

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def readiness(self) -> tuple[bool, str]:
        """(ready, why)."""
        if self.stopping:
            return False, "draining"
        ready, draining = self._own_gauges()
        if draining:  # for good: a draining worker exits, even once its draining process is gone
            self.stopping = True
            return False, "draining"
        if ready < self.expected:
            return False, f"{ready} of {self.expected} worker processes have their model loaded"
        if time.monotonic() - self._broker_ok_at > 3 * BROKER_CHECK_EVERY_S:
            return False, "the broker does not answer"
        return True, "ready"

    def _own_gauges(self) -> tuple[int, bool]:
        forget_dead_processes(self.path)
        values = {s.name: s.value for family in self._processes.collect() for s in family.samples}
        return int(values.get("visionfleet_processes_ready", 0)), values.get("visionfleet_worker_draining", 0) > 0

    def _watch_broker(self) -> None:
        while True:
            try:
                with self.app.connection_for_read() as conn:
                    conn.ensure_connection(max_retries=1, timeout=3)
                    conn.default_channel  # noqa: B018 -- opening a channel is a round trip (Redis: a PING)
                self._broker_ok_at = time.monotonic()
            except Exception as exc:  # any failure means not ready; say why once per check
                log.warning("broker check failed", extra={"error": f"{type(exc).__name__}: {exc}"})
            time.sleep(BROKER_CHECK_EVERY_S)

    def metrics(self) -> bytes:
        from prometheus_client import generate_latest

        forget_dead_processes(self.path)
        return generate_latest(self.registry)


def _handler(exporter: Exporter):
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 -- http.server's name
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                from prometheus_client import CONTENT_TYPE_LATEST

                self._answer(200, exporter.metrics(), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                self._answer(200, b"ok\n")
            elif path == "/readyz":
                ready, why = exporter.readiness()
                self._answer(200 if ready else 503, f"{why}\n".encode())
            else:
                self._answer(404, b"not found: /metrics, /healthz or /readyz\n")

        def _answer(self, code: int, body: bytes, content_type: str = "text/plain; charset=utf-8") -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_) -> None:  # a probe every few seconds is not news
            pass

    return Handler


def metric_names() -> set[str]:
    """Every sample name a worker exposes (``_total``, ``_bucket``, ``_sum``, ``_count`` included):
    what manifests, dashboards and alerts may name."""
    from prometheus_client.metrics import MetricWrapperBase

    from visionfleet.pipeline import process_metrics
    from visionfleet.workers.gauges import described

    families = [family for metric in vars(process_metrics).values() if isinstance(metric, MetricWrapperBase)
                for family in metric.describe()]
    names = set()
    for family in families + described():
        names.update(f"{family.name}{suffix}" for suffix in _SUFFIXES[family.type])
    return names


_SUFFIXES = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count")}

"""Test helpers: waiting on conditions, processes we start, reading job output."""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def wait_until(condition: Callable[[], object], timeout: float, what: str, *, every: float = 0.1):
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_process(proc: subprocess.Popen, timeout: float = 30) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class RedisServer:
    """A private redis-server on a free port, keeping nothing on disk."""

    def __init__(self, workdir: Path, password: str | None = None, tls: Path | None = None) -> None:
        """``tls``: a folder with ca.pem, server.pem and server.key; then TLS only (``rediss://``)."""
        self.binary = shutil.which("redis-server")
        if self.binary is None:
            raise RuntimeError("redis-server is not installed; install it (Debian: apt-get install redis-server)")
        self.workdir, self.password, self.tls = workdir, password, tls
        self.port = free_port()
        auth = f":{password}@" if password else ""
        if tls:
            self.url = f"rediss://{auth}127.0.0.1:{self.port}/0?ssl_cert_reqs=required&ssl_ca_certs={tls / 'ca.pem'}"
        else:
            self.url = f"redis://{auth}127.0.0.1:{self.port}/0"
        self.start()

    def start(self) -> None:
        options = ["--requirepass", self.password] if self.password else []
        port = ["--port", str(self.port)]
        if self.tls:
            port = ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", str(self.tls / "server.pem"),
                    "--tls-key-file", str(self.tls / "server.key"), "--tls-ca-cert-file", str(self.tls / "ca.pem"),
                    "--tls-auth-clients", "no"]
        self.proc = subprocess.Popen(
            [self.binary, *port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir), *options], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        import redis

        client = redis.Redis.from_url(self.url)
        wait_until(lambda: _pings(client), 10, "private redis-server to answer")

    def shut_down_keeping_data(self) -> None:
        """A clean stop that keeps every key (as a Redis with persistence does); ``start`` loads them back."""
        import redis

        redis.Redis.from_url(self.url).shutdown(save=True)
        self.proc.wait(timeout=30)

    def crash_and_restart_empty(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self.start()

    def stop(self) -> None:
        stop_process(self.proc, timeout=10)


def _pings(client) -> bool:
    import redis

    try:
        return client.ping()
    except redis.ConnectionError:
        return False


def visionfleet(*args: str, env: dict, timeout: float = 300, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run the real CLI in a subprocess."""
    return subprocess.run([sys.executable, "-m", "visionfleet.cli", *args], env=env, cwd=cwd or REPO, capture_output=True,
                          text=True, timeout=timeout)


class Workers:
    """Real ``visionfleet worker`` processes, stopped at teardown."""

    def __init__(self, env: dict, log_dir: Path) -> None:
        self.env, self.log_dir = env, log_dir
        self.procs: list[subprocess.Popen] = []

    def start(self, count: int = 1, queues: str = "bulk", **env: str) -> list[subprocess.Popen]:
        started = []
        for _ in range(count):
            i = len(self.procs)
            log = open(self.log_dir / f"worker-{i}.log", "wb")
            proc = subprocess.Popen(
                [sys.executable, "-m", "visionfleet.cli", "worker", "-Q", queues, "-c", "1", "-n", f"test{i}-{os.getpid()}@%h"],
                env={**self.env, "VISIONFLEET_THREADS": "1", **env}, cwd=REPO, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True)  # its own group: SIGSTOP/SIGKILL it whole
            log.close()
            self.procs.append(proc)
            started.append(proc)
        return started

    def logs(self, tail: int = 3000) -> str:
        return "\n".join(p.read_text(errors="replace")[-tail:] for p in sorted(self.log_dir.glob("worker-*.log")))

    def stop_all(self) -> None:
        for proc in self.procs:
            stop_process(proc)


def read_output(read: Callable[[str], bytes], root: str) -> tuple[dict, list[dict]]:
    """The job's ``_SUCCESS.json`` and every record of the parts it lists."""
    summary = json.loads(read(f"{root}/_SUCCESS.json"))
    records = []
    for part in summary["parts"]:
        records += [json.loads(line) for line in read(f"{root}/{part}").decode().splitlines()]
    return summary, records

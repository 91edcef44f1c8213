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

from bench.samples import export
from visionfleet.checkpoints import open_store
from visionfleet.checkpoints.keys import DEFAULT_NAMESPACE

REPO = Path(__file__).resolve().parent.parent


def wait_until(condition: Callable[[], object], timeout: float, what: str | Callable[[], str], *,
               every: float = 0.1):
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` seconds.

    ``what`` may be a function: it is called at the timeout, so what it says (worker logs) is as of then."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what() if callable(what) else what}")
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


def relabel(env: dict, *args: str, cwd: Path | None = None) -> str:
    """``visionfleet relabel ARGS``, which must succeed; the job id it prints alone on its last line."""
    result = visionfleet("relabel", *args, env=env, cwd=cwd)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def wait_for_job(env: dict, workers: "Workers", job_id: str, timeout: float = 240, *,
                 workers_stay_up: bool = True) -> dict:
    """Wait for the job to end (succeeded or failed); then its ``visionfleet status --json``.

    With ``workers_stay_up`` a worker that exits fails the wait at once (a test that kills one says
    False); either way a timeout shows the workers' logs."""
    store = open_store(env.get("VISIONFLEET_STATE_URL") or env["VISIONFLEET_BROKER_URL"],
                       namespace=env.get("VISIONFLEET_NAMESPACE") or DEFAULT_NAMESPACE)  # the workers' keys

    def ended() -> bool:
        if workers_stay_up:
            assert all(w.poll() is None for w in workers.procs), workers.logs()
        return store.progress(job_id).state in ("succeeded", "failed")

    wait_until(ended, timeout, lambda: f"job {job_id} to end; worker logs:\n{workers.logs()}")
    status = visionfleet("status", job_id, "--json", env=env)
    assert status.returncode == 0, status.stderr
    return json.loads(status.stdout)


def clean_env() -> dict:
    """This process's environment without any VISIONFLEET_ or OSS_ variable: a command started with it
    sees only the settings its test gives it, not those of the shell that ran pytest."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("VISIONFLEET_", "OSS_"))}


def embedded_env(tmp_path: Path, *, shared_model_cache: bool = True) -> dict:
    """Environment of an embedded-default command: no broker, its home under ``tmp_path``."""
    env = clean_env()
    if shared_model_cache:  # else the default, under VISIONFLEET_HOME, as on a new machine
        env["VISIONFLEET_MODEL_CACHE"] = os.environ["VISIONFLEET_MODEL_CACHE"]
    return {**env, "VISIONFLEET_HOME": str(tmp_path / "home"), "PYTHONPATH": str(REPO)}


def linked_photos(tmp_path: Path, count: int) -> Path:
    """``tmp_path/photos`` of ``count`` hard links to the bundled photos (exported to ``tmp_path/originals``):
    a job that takes a while, at no disk cost."""
    originals = export(tmp_path / "originals")
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(count):
        source = originals[i % len(originals)]
        os.link(source, folder / f"{i:05d}{source.suffix}")
    return folder


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
    """The job's ``_SUCCESS.json`` and every record of the parts it lists, JSON Lines or Parquet."""
    import pyarrow
    import pyarrow.parquet

    summary = json.loads(read(f"{root}/_SUCCESS.json"))
    records = []
    for part in summary["parts"]:
        data = read(f"{root}/{part}")
        if part.endswith(".parquet"):
            records += pyarrow.parquet.read_table(pyarrow.BufferReader(data)).to_pylist()
        else:
            records += [json.loads(line) for line in data.decode().splitlines()]
    return summary, records

"""Worker processes that ``visionfleet relabel`` starts and stops itself
when no broker is configured (the embedded default)."""
import os
import signal
import subprocess
import sys
from pathlib import Path

from pipeline.errors import VisionfleetError

STOP_TIMEOUT_S = 30


class EmbeddedWorkers:
    """``count`` real ``visionfleet worker`` processes sharing the cores."""

    def __init__(self, home: Path, count: int) -> None:
        self.home, self.count = home, count
        self._procs: list[subprocess.Popen] = []
        self.log_dir = home / "logs"

    def start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        threads = max(1, (os.cpu_count() or 1) // self.count)
        env = {**os.environ, "VISIONFLEET_TORCH_THREADS": str(threads)}
        for i in range(self.count):
            log = open(self.log_dir / f"worker-{i}.log", "ab")
            cmd = [sys.executable, "-m", "cli", "worker", "--queues", "bulk", "--concurrency", "1",
                   "--hostname", f"embedded-{os.getpid()}-{i}@%h"]
            self._procs.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT))
            log.close()

    def check_alive(self) -> None:
        """Raise if every worker died (e.g. the model failed to load)."""
        if self._procs and all(p.poll() is not None for p in self._procs):
            codes = ", ".join(str(p.returncode) for p in self._procs)
            raise VisionfleetError(f"all embedded workers exited (codes {codes}); see the logs in {self.log_dir}")

    def stop(self) -> None:
        for p in self._procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)  # Celery's warm shutdown
        for p in self._procs:
            try:
                p.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self._procs.clear()

    def __enter__(self) -> "EmbeddedWorkers":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

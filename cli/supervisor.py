"""Worker processes started and stopped by a ``visionfleet`` command: the
embedded default's workers, and the online + bulk pair of ``visionfleet worker``."""
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from visionfleet.pipeline.errors import VisionfleetError

STOP_TIMEOUT_S = 30
GROUP_GONE_TIMEOUT_S = 5


class WorkerProcesses:
    """Real ``visionfleet worker`` processes; each entry is (arguments, extra environment)."""

    def __init__(self, workers: list[tuple[list[str], dict]], log_dir: Path | None = None,
                 own_session: bool = False) -> None:
        self.workers, self.log_dir, self.own_session = workers, log_dir, own_session
        self.procs: list[subprocess.Popen] = []
        self._sent: dict[int, set[int]] = {}

    def start(self) -> None:
        if self.log_dir:
            self.log_dir.mkdir(parents=True, exist_ok=True)
        for i, (args, env) in enumerate(self.workers):
            out = open(self.log_dir / f"worker-{i}.log", "ab") if self.log_dir else None
            self.procs.append(subprocess.Popen(
                [sys.executable, "-m", "visionfleet.cli", "worker", *args], env={**os.environ, **env},
                stdout=out, stderr=subprocess.STDOUT if out else None, start_new_session=self.own_session))
            if out:
                out.close()

    def check_alive(self) -> None:
        """Raise if every worker died (e.g. the model failed to load)."""
        if self.procs and all(p.poll() is not None for p in self.procs):
            codes = ", ".join(str(p.returncode) for p in self.procs)
            where = f"; see the logs in {self.log_dir}" if self.log_dir else ""
            raise VisionfleetError(f"all workers exited (codes {codes}){where}")

    def signal_all(self, sig: int) -> None:
        """Send ``sig`` once to each live worker: a second SIGTERM while Celery
        is in its warm shutdown kills the worker by the signal's default action."""
        for p in self.procs:
            if p.poll() is None and sig not in self._sent.setdefault(p.pid, set()):
                self._sent[p.pid].add(sig)
                p.send_signal(sig)

    def stop(self) -> None:
        self.signal_all(signal.SIGTERM)  # each drains: Celery's warm shutdown
        for p in self.procs:
            try:
                p.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if self.own_session:  # their pool processes too: whoever looks next must find them gone
            for p in self.procs:
                _wait_group_gone(p.pid, GROUP_GONE_TIMEOUT_S)

    def kill_now(self) -> None:
        """Stop at once: each worker and its pool processes (their own group, when in their own session).

        Only sends signals, so a signal handler may call it; ``stop`` then reaps them."""
        for p in self.procs:
            if p.returncode is None:
                try:
                    if self.own_session:
                        os.killpg(p.pid, signal.SIGKILL)
                    else:
                        p.kill()
                except ProcessLookupError:
                    pass

    def supervise(self, on_signal: Callable[[], None] = lambda: None) -> int:
        """Run until a signal or a worker's exit, then stop the rest; the worst exit code.

        ``on_signal`` runs first when a signal comes (the readiness probe turns 503). The first
        signal drains the workers; a second (Ctrl-C again) stops them now: Celery's cold shutdown."""
        signalled = []

        def forward(signum: int, _) -> None:
            on_signal()
            self.signal_all(signal.SIGQUIT if signalled else signum)
            signalled.append(signum)

        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, forward)
        self.start()
        pid, status = os.wait()  # any child: when one goes, the pair goes (the orchestrator restarts it)
        for p in self.procs:
            if p.pid == pid:
                p.returncode = os.waitstatus_to_exitcode(status)
        self.stop()
        return max(abs(p.returncode or 0) for p in self.procs)

    def __enter__(self) -> "WorkerProcesses":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _wait_group_gone(pgid: int, timeout_s: float) -> None:
    """Until no live process (zombies do not count) is left in the group; Linux only, else at once."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and _group_alive(pgid):
        time.sleep(0.05)  # a killed process leaves within milliseconds; nothing to wait on but /proc


def _group_alive(pgid: int) -> bool:
    from visionfleet.workers.heartbeat import proc_stat

    for entry in Path("/proc").glob("[0-9]*"):
        fields = proc_stat(entry.name)
        if fields and fields[0] != "Z" and int(fields[2]) == pgid:
            return True
    return False

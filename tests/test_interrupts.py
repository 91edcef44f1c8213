"""Interrupting the embedded default, as a person at a terminal would: Ctrl-C once
(commit and stop), twice (stop at once), or the command killed outright.
Each resume finishes every input exactly once, without waiting for a lease to run out."""
import contextlib
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from tests.helpers import REPO, embedded_env, linked_photos, visionfleet, wait_until

pytestmark = pytest.mark.slow  # the CLI and its workers, interrupted

IMAGES = 2400


@pytest.fixture
def photos(tmp_path):
    """Many (not conftest's few): hard links of the bundled photos, a job that takes a while."""
    return linked_photos(tmp_path, IMAGES)


def start_relabel(tmp_path, photos, env) -> subprocess.Popen:
    # Its own session, like a terminal's foreground job: a signal to the group reaches it alone.
    return subprocess.Popen([sys.executable, "-m", "visionfleet.cli", "relabel", str(photos), "--output",
                             str(tmp_path / "labels"), "--shard-size", "200"], env=env, cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)


def committed(tmp_path) -> int:
    """Images committed so far by the embedded run's one job (read from its state file)."""
    db = tmp_path / "home" / "state.db"
    if not db.exists():
        return 0
    with contextlib.closing(sqlite3.connect(db, timeout=30)) as conn:
        try:
            return conn.execute("SELECT COALESCE(SUM(ok + errors), 0) FROM jobs").fetchone()[0]
        except sqlite3.OperationalError:  # the schema is not there yet
            return 0


def descendants(pid: int) -> set[int]:
    found, todo = set(), [pid]
    while todo:
        current = todo.pop()
        try:
            children = open(f"/proc/{current}/task/{current}/children").read().split()
        except OSError:
            continue
        found.update(int(c) for c in children)
        todo += [int(c) for c in children]
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split(") ", 1)[1][0] != "Z"


def resume_and_check(tmp_path, env, job_id: str, resume_line: str) -> None:
    args = resume_line.split()[1:]  # as printed: visionfleet resume JOB --output DEST --wait
    assert args[:2] == ["resume", job_id]
    done = visionfleet(*args, env=env, timeout=240)
    assert done.returncode == 0, done.stderr
    # Its summary's rate is over what this run labelled, and says so: not over every run's span.
    assert re.search(rf"{job_id}: succeeded {IMAGES}/{IMAGES} done, 0 errors, [0-9.]+ images/s this run", done.stderr)
    root = tmp_path / "labels" / job_id
    summary = json.loads((root / "_SUCCESS.json").read_text())
    uris = [json.loads(line)["uri"] for part in summary["parts"] for line in (root / part).read_text().splitlines()]
    assert summary["total"] == summary["ok"] == IMAGES
    assert sorted(uris) == sorted(str(p) for p in (tmp_path / "photos").iterdir())  # each exactly once


def interrupted_run(tmp_path, photos, *, presses: int):
    """Ctrl-C ``presses`` times once a first commit is in; (env, exit code, seconds from the first press, stdout, stderr)."""
    env = {**embedded_env(tmp_path), "VISIONFLEET_LEASE_TTL_S": "600"}  # a resume that waited on it would time out
    run = start_relabel(tmp_path, photos, env)
    try:
        wait_until(lambda: committed(tmp_path) > 0, 120, "a first commit")
        os.killpg(run.pid, signal.SIGINT)
        pressed = time.monotonic()
        if presses > 1:  # the second press once the workers are draining, as a person would
            log = tmp_path / "home" / "logs" / "worker-0.log"
            wait_until(lambda: "Warm shutdown" in log.read_text(errors="replace"), 30, "the drain to start")
            os.killpg(run.pid, signal.SIGINT)
        out, err = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.communicate()
    return env, run.returncode, time.monotonic() - pressed, out, err


@pytest.mark.parametrize("presses", [1, 2])
def test_ctrl_c_commits_prints_the_resume_command_and_the_resume_finishes_exactly(tmp_path, photos, presses):
    env, code, took, out, err = interrupted_run(tmp_path, photos, presses=presses)
    assert code == 130, err
    assert took < 10, f"{took:.1f}s from Ctrl-C to exit"
    assert "Traceback" not in err and "Aborted" not in err
    assert ("stopped at once" in err) == (presses == 2)
    job_id = out.strip().splitlines()[-1]
    lines = err.splitlines()
    resume = lines[lines.index(next(l for l in lines if "finish it with:" in l)) + 1].strip()
    assert resume == f"visionfleet resume {job_id} --output {tmp_path / 'labels'} --wait"
    status = json.loads(visionfleet("status", job_id, "--json", env=env).stdout)
    assert status["state"] == "running" and 0 < status["done"] < IMAGES  # the states scripts know
    assert status["interrupted"] is True and resume in status["reason"]
    assert status["workers"] == [] and status["no_worker_for_s"] is not None and status["eta_s"] is None
    line = visionfleet("status", job_id, env=env).stdout
    assert line.startswith(f"{job_id}: interrupted {status['done']}/{IMAGES} done") and resume in line
    assert [r["interrupted"] for r in map(json.loads, visionfleet("jobs", "--json", env=env).stdout.splitlines())
            if r["job_id"] == job_id] == [True]
    assert f"{job_id}  interrupted  " in visionfleet("jobs", env=env).stdout

    # Another run meanwhile: it names the unfinished job and how to finish it, and leaves it alone.
    other = visionfleet("relabel", str(tmp_path / "originals"), "-o", str(tmp_path / "other"), env=env, timeout=120)
    assert other.returncode == 0, other.stderr
    assert f"note: job {job_id} was left unfinished" in other.stderr and resume in other.stderr
    assert json.loads(visionfleet("status", job_id, "--json", env=env).stdout)["done"] == status["done"]

    resume_and_check(tmp_path, env, job_id, resume)
    row = json.loads(visionfleet("jobs", "--json", env=env).stdout.splitlines()[1])  # the other run is newer
    assert (row["job_id"], row["state"], row["interrupted"]) == (job_id, "succeeded", False)


def test_killing_the_command_outright_stops_its_workers(tmp_path, photos):
    env = embedded_env(tmp_path)
    run = start_relabel(tmp_path, photos, env)
    try:
        wait_until(lambda: committed(tmp_path) > 0, 120, "a first commit")
        workers = descendants(run.pid)
        assert workers, "the embedded run started no worker"
        os.killpg(run.pid, signal.SIGKILL)
        run.communicate()
        wait_until(lambda: not any(alive(pid) for pid in workers), 30, "the orphaned workers to exit")
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.communicate()
        for pid in descendants(run.pid) | workers:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)

"""The fast-accelerator benchmark's pieces: the stand-in device model, and the command on a few photos."""
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from bench.standin_model import StandinModel, build
from visionfleet.pipeline.engines import RuntimeSettings

REPO = Path(__file__).resolve().parent.parent


def _batches(model: StandinModel, count: int) -> float:
    batch = np.zeros((model.info.max_batch_size, 224, 224, 3), np.uint8)
    start = time.perf_counter()
    for _ in range(count):
        probs = model.checked_predict(batch)
    assert probs.shape == (len(batch), 1000)
    return time.perf_counter() - start


def test_standin_predicts_at_about_its_rate_on_the_builtin_geometry(monkeypatch):
    monkeypatch.setenv("VISIONFLEET_STANDIN_RATE", "4000")
    model = build(RuntimeSettings(max_batch_size=32))
    assert model.info.geometry.size == (224, 224) and model.info.geometry.resize == 256
    assert len(model.info.class_names) == 1000
    rate = 10 * 32 / _batches(model, 10)
    assert 4000 / 5 < rate <= 4000 * 1.05  # a sleep is never shorter than asked; a loaded machine adds to it
    probs = model.predict(np.zeros((2, 224, 224, 3), np.uint8))
    assert abs(float(probs[0].sum()) - 1) < 1e-5 and probs[0].argmax() == 0


def test_standin_releases_the_gil_like_a_device_call():
    model = StandinModel(32, images_per_s=1000)  # 32 ms a batch
    alone = _batches(model, 8)
    threads = [threading.Thread(target=_batches, args=(model, 8)) for _ in range(2)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert time.perf_counter() - start < 1.6 * alone  # two threads overlap: not 2x one thread's time


@pytest.mark.slow
def test_fed_command_on_a_few_photos_prints_every_number_and_leaves_nothing(tmp_path):
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "bench.fed", "--photos", "12", "--rounds", "1"], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    for field in ("decode capacity (project):", "Pillow reference capacity:", "end to end (worker):", "fed = ",
                  "x Pillow = ", "in the model:", "commits:", "bookkeeping:", "waiting for batch:",
                  "shard fill and drain:", "decode CPU per image:", "load average"):
        assert field in out, out
    end_to_end = float(out.split("end to end (worker):")[1].split()[0])
    assert end_to_end > 0
    assert list(tmp_path.iterdir()) == []  # photos, the Redis's folder and the worker's log all gone

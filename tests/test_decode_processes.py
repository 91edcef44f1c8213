"""Decode processes (VISIONFLEET_DECODE_PROCESSES): the same crops and errors as the load threads, the
decode budget kept, and every way a decode process or its owner can end."""
import io
import json
import os
import signal
import subprocess
import sys
import threading

import numpy as np
import pytest
from PIL import Image

from tests.helpers import embedded_env, visionfleet, wait_until
from tests.photos import KNOWN, bad_inputs, jpeg, photo_bytes
from visionfleet.pipeline.decode import Geometry, source_pixels
from visionfleet.pipeline.decode_budget import PixelBudget
from visionfleet.pipeline.decode_processes import DecodeProcesses
from visionfleet.pipeline.errors import ConfigError, InputError
from visionfleet.pipeline.gpu_decode import pick_decoder
from visionfleet.pipeline.labeller import LoadSettings
from visionfleet.workers.heartbeat import proc_stat

GEOMETRIES = [Geometry(), Geometry(320, 288, "bicubic"), Geometry(None, (100, 50))]


@pytest.fixture
def pool():
    decoders = DecodeProcesses("fast", 2)
    yield decoders
    decoders.close()


def alive(pid: int) -> bool:
    return (proc_stat(str(pid)) or ["Z"])[0] != "Z"


def outcome(decode, data: bytes, geometry: Geometry) -> np.ndarray | str:
    try:
        return decode(data, geometry)
    except InputError as exc:
        return f"InputError: {exc}"


@pytest.mark.parametrize("decoder", ["fast", "cpu"])
def test_the_same_crops_and_errors_as_in_threads(decoder):
    here = pick_decoder(decoder, "cpu")
    decoders = DecodeProcesses(decoder, 2)
    try:
        for name in KNOWN:
            photo = np.asarray(Image.open(io.BytesIO(photo_bytes(name))).convert("RGB"))
            for data in (photo_bytes(name), jpeg(photo)):
                for geometry in GEOMETRIES:
                    got, want = decoders(data, geometry), here(data, geometry)
                    assert got.shape == want.shape and got.dtype == want.dtype and np.array_equal(got, want)
        for name, (data, _) in bad_inputs().items():
            if data is not None:
                assert outcome(decoders, data, Geometry()) == outcome(here, data, Geometry()), name
    finally:
        decoders.close()


def test_many_threads_at_once_each_get_their_own_crop(pool):
    rng = np.random.default_rng(3)
    pictures = [jpeg(rng.integers(0, 256, (240 + i, 320, 3), np.uint8)) for i in range(24)]
    here = pick_decoder("fast", "cpu")
    got: dict[int, np.ndarray] = {}

    def work(i: int) -> None:
        got[i] = pool(pictures[i], Geometry())

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(pictures))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(np.array_equal(got[i], here(p, Geometry())) for i, p in enumerate(pictures))


def test_the_budget_is_taken_for_the_source_pixels_and_given_back(pool):
    data = jpeg(np.zeros((600, 800, 3), np.uint8))
    held: list[int] = []
    budget = PixelBudget(10**9, on_change=lambda in_use, waiting: held.append(in_use))
    assert pool(data, Geometry(), budget=budget).shape == (224, 224, 3)
    assert held == [800 * 600, 0] and budget.in_use == 0
    held.clear()
    with pytest.raises(InputError, match="not an image"):
        pool(b"plain text, not a picture", Geometry(), budget=budget)
    assert held == [] and source_pixels(b"") == 0  # refused at the header: no budget taken


def test_a_larger_crop_gets_a_larger_buffer(pool):
    data = jpeg(np.full((1200, 1600, 3), 90, np.uint8))
    assert pool(data, Geometry()).shape == (224, 224, 3)
    big = pool(data, Geometry(1024, 1000))
    assert big.shape == (1000, 1000, 3) and (big == 90).all()


def test_ctrl_c_and_sigterm_leave_the_decode_processes_running(pool):
    pids = pool.pids()
    for pid in pids:
        os.kill(pid, signal.SIGINT)
        os.kill(pid, signal.SIGTERM)
    assert pool(photo_bytes("coffee.png"), Geometry()).shape == (224, 224, 3)
    assert pool.pids() == pids and all(map(alive, pids))


def test_a_killed_idle_decode_process_is_replaced(pool):
    first = pool.pids()
    os.kill(first[0], signal.SIGKILL)
    wait_until(lambda: pool.pids()[0] != first[0], 60, "a replacement decode process")
    for _ in range(6):  # every slot, on either process
        assert pool(photo_bytes("chelsea.png"), Geometry()).shape == (224, 224, 3)
    assert not alive(first[0]) and alive(pool.pids()[0])


def big_progressive_jpeg() -> bytes:
    """A picture that takes a decode process a while (all of a progressive JPEG's coefficients)."""
    y, x = np.mgrid[0:3000, 0:4000]
    pixels = np.stack([(x * 7 + y) % 256, (y * 5) % 256, (x ^ y) % 256], axis=-1).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", quality=95, progressive=True)
    return out.getvalue()


def holding_a_request(pid: int) -> bool:
    """Whether decode process ``pid`` has mapped its request buffers: it has a request in hand."""
    try:
        return "memfd:visionfleet-decode" in open(f"/proc/{pid}/maps").read()
    except OSError:
        return False


def kill_in_hand(pool: DecodeProcesses, before: set[int]) -> int:
    """Kill the pool's decode process (one not in ``before``) once it holds a request; its pid."""
    pid = wait_until(lambda: next((p for p in pool.pids() if p not in before and holding_a_request(p)), None),
                     60, "a decode process holding the request", every=0.002)
    os.kill(pid, signal.SIGKILL)
    return pid


def decode_in_a_thread(pool: DecodeProcesses, data: bytes) -> tuple[threading.Thread, list]:
    result: list = []
    thread = threading.Thread(target=lambda: result.append(outcome(pool, data, Geometry())))
    thread.start()
    return thread, result


def test_the_request_in_hand_is_tried_again_and_a_picture_that_ends_two_gets_an_error():
    data = big_progressive_jpeg()
    for deaths in (1, 2):
        pool = DecodeProcesses("fast", 1)  # new processes: none has mapped a buffer before the request
        try:
            thread, result = decode_in_a_thread(pool, data)
            killed: set[int] = set()
            for _ in range(deaths):
                killed.add(kill_in_hand(pool, killed))
            thread.join(120)
            if deaths == 1:  # tried again on the replacement
                assert np.array_equal(result[0], pick_decoder("fast", "cpu")(data, Geometry()))
            else:
                assert result == ["InputError: cannot process image: decoding it ended a decode process twice "
                                  "(killed by SIGKILL)"]
            assert pool(photo_bytes("camera.png"), Geometry()).shape == (224, 224, 3)  # and it goes on
        finally:
            pool.close()


def test_close_ends_the_decode_processes():
    pool = DecodeProcesses("cpu", 2)
    pids = pool.pids()
    pool.close()
    assert not any(map(alive, pids))


def test_decode_processes_never_outlive_their_owner_even_when_it_is_killed(tmp_path):
    owner = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from visionfleet.pipeline.decode_processes import DecodeProcesses; "
                               "p = DecodeProcesses('fast', 2); print(*p.pids(), flush=True); time.sleep(600)"],
        stdout=subprocess.PIPE, text=True)
    try:
        pids = [int(p) for p in owner.stdout.readline().split()]
        assert len(pids) == 2 and all(map(alive, pids))
    finally:
        owner.kill()
        owner.wait()
    wait_until(lambda: not any(map(alive, pids)), 60, "the decode processes to end with their owner")


def test_the_setting_is_read_and_checked(monkeypatch):
    monkeypatch.delenv("VISIONFLEET_DECODE", raising=False)
    monkeypatch.delenv("VISIONFLEET_DECODE_PROCESSES", raising=False)
    assert LoadSettings.from_env().decode_processes == 0 and LoadSettings.from_env().decoders() is None
    monkeypatch.setenv("VISIONFLEET_DECODE_PROCESSES", "3")
    assert LoadSettings.from_env().decode_processes == 3
    monkeypatch.setenv("VISIONFLEET_DECODE_PROCESSES", "-1")
    with pytest.raises(ConfigError, match="VISIONFLEET_DECODE_PROCESSES=-1 is out of range"):
        LoadSettings.from_env()
    monkeypatch.setenv("VISIONFLEET_DECODE_PROCESSES", "2")
    monkeypatch.setenv("VISIONFLEET_DECODE", "gpu")
    with pytest.raises(ConfigError, match="set VISIONFLEET_DECODE_PROCESSES=0 or VISIONFLEET_DECODE=fast"):
        LoadSettings.from_env()


@pytest.mark.slow
def test_a_relabel_with_decode_processes_writes_what_one_with_threads_does(tmp_path, photos):
    from tests.test_embedded import processes_with

    labels = {}
    for processes in ("0", "2"):
        env = {**embedded_env(tmp_path), "VISIONFLEET_DECODE_PROCESSES": processes}
        out = tmp_path / f"labels-{processes}"
        result = visionfleet("relabel", str(photos), "--output", str(out), "--wait", env=env, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        root = out / result.stdout.strip().splitlines()[-1]
        summary = json.loads((root / "_SUCCESS.json").read_text())
        records = [json.loads(line) for part in summary["parts"] for line in (root / part).read_text().splitlines()]
        labels[processes] = sorted((r["uri"].rsplit("/", 1)[1], r["preprocess"], r["labels"]) for r in records)
    assert labels["2"] == labels["0"] and len(labels["0"]) == summary["total"] > 0
    assert processes_with(f"VISIONFLEET_HOME={tmp_path / 'home'}") == []  # the decode processes too

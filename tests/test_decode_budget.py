"""pipeline.decode_budget: source pixels in flight per process, granted first come, first served;
and decode_image and the labeller taking their pictures' pixels from it."""
import io
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from visionfleet.pipeline.decode import DEFAULT_DECODE_BUDGET, DEFAULT_MAX_PIXELS, Geometry, decode_image
from visionfleet.pipeline.decode_budget import PixelBudget
from visionfleet.pipeline.errors import ConfigError, InputError
from visionfleet.pipeline.labeller import Labeller, LoadSettings
from tests.helpers import wait_until
from tests.test_labeller import CountingModel

G = Geometry()


class Holder:
    """A thread that holds ``pixels`` of a budget until told to let go."""

    def __init__(self, budget: PixelBudget, pixels: int) -> None:
        self.taken: int | None = None
        self._go = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(budget, pixels), daemon=True)
        self._thread.start()

    def _run(self, budget: PixelBudget, pixels: int) -> None:
        with budget.hold(pixels) as taken:
            self.taken = taken
            self._go.wait(30)

    def release(self) -> None:
        self._go.set()
        self._thread.join(30)
        assert not self._thread.is_alive()


def wait_for_line(budget: PixelBudget, count: int) -> None:
    wait_until(lambda: budget.waiting == count, 10, f"{count} callers in line", every=0.01)


def test_callers_share_the_budget_and_the_next_waits_for_room():
    budget = PixelBudget(100)
    a, b = Holder(budget, 60), Holder(budget, 40)
    wait_until(lambda: budget.in_use == 100, 10, "both held", every=0.01)
    c = Holder(budget, 30)
    wait_for_line(budget, 1)
    assert c.taken is None and budget.in_use == 100
    a.release()
    wait_until(lambda: c.taken == 30, 10, "the waiter served", every=0.01)
    assert budget.in_use == 70 and budget.waiting == 0
    b.release()
    c.release()
    assert budget.in_use == 0


def test_first_come_first_served_so_a_large_image_is_not_starved():
    budget = PixelBudget(100)
    small = Holder(budget, 30)
    large = Holder(budget, 90)  # does not fit beside `small`
    wait_for_line(budget, 1)
    later = Holder(budget, 10)  # would fit, but stands behind `large`
    wait_for_line(budget, 2)
    assert later.taken is None
    small.release()
    wait_until(lambda: large.taken == 90, 10, "the large image served", every=0.01)
    wait_until(lambda: later.taken == 10, 10, "the small one beside it", every=0.01)
    large.release()
    later.release()
    assert budget.in_use == 0


def test_an_image_larger_than_the_budget_waits_for_all_of_it_and_decodes_alone():
    budget = PixelBudget(100)
    other = Holder(budget, 1)
    huge = Holder(budget, 10_000)
    wait_for_line(budget, 1)
    other.release()
    wait_until(lambda: huge.taken == 100, 10, "the huge image served", every=0.01)
    assert budget.in_use == 100
    behind = Holder(budget, 1)
    wait_for_line(budget, 1)  # nothing decodes beside it
    huge.release()
    wait_until(lambda: behind.taken == 1, 10, "the next one", every=0.01)
    behind.release()
    assert budget.in_use == 0


def test_given_back_when_the_holder_fails_and_reported_on_every_change():
    seen = []
    budget = PixelBudget(100, on_change=lambda in_use, waiting: seen.append((in_use, waiting)))
    with pytest.raises(RuntimeError, match="decoder broke"):
        with budget.hold(70):
            raise RuntimeError("decoder broke")
    assert budget.in_use == 0 and seen == [(70, 0), (0, 0)]
    with pytest.raises(RuntimeError, match="released 5 pixels, but only 0 are taken"):
        budget.release(5)
    with pytest.raises(ValueError, match="at least 1"):
        PixelBudget(0)


def progressive_jpeg(width: int, height: int) -> bytes:
    ramp = np.linspace(0, 255, width * height * 3).astype(np.uint8).reshape(height, width, 3)
    out = io.BytesIO()
    Image.fromarray(ramp).save(out, "JPEG", progressive=True, quality=80)
    return out.getvalue()


def recording_budget(capacity: int) -> tuple[PixelBudget, list[int]]:
    held: list[int] = []
    return PixelBudget(capacity, on_change=lambda in_use, waiting: held.append(in_use)), held


def test_decode_holds_the_source_pixels_even_when_drafted_small():
    budget, held = recording_budget(10**9)
    out = decode_image(progressive_jpeg(2000, 1500), G, budget=budget)  # decoded at 1/4 scale
    assert out.shape == (224, 224, 3)
    assert held == [3_000_000, 0]


def test_decode_gives_the_budget_back_for_a_bad_image_and_never_takes_it_for_a_refused_one():
    budget, held = recording_budget(10**9)
    data = progressive_jpeg(2000, 1500)
    with pytest.raises(InputError, match="JPEG image"):
        decode_image(data[: len(data) // 3], G, budget=budget)
    assert held == [3_000_000, 0]
    with pytest.raises(InputError, match="image too large"):
        decode_image(data, G, max_pixels=1_000_000, budget=budget)
    assert held == [3_000_000, 0]  # refused from its header: no wait, no pixels held


def test_concurrent_decodes_stay_within_the_budget_and_give_the_same_crops():
    budget, held = recording_budget(7_000_000)  # room for two 3 MP pictures, never three
    inputs = [progressive_jpeg(2000, 1500)] * 12
    expected = decode_image(inputs[0], G)
    with ThreadPoolExecutor(8) as pool:
        crops = list(pool.map(lambda d: decode_image(d, G, budget=budget), inputs))
    assert all(np.array_equal(crop, expected) for crop in crops)
    assert max(held) == 6_000_000 and held[-1] == 0 and budget.waiting == 0


def test_labellers_of_a_process_share_one_budget(tmp_path):
    budget, held = recording_budget(4_000_000)
    uris = []
    for i in range(6):
        (tmp_path / f"{i}.jpg").write_bytes(progressive_jpeg(2000, 1500))
        uris.append(str(tmp_path / f"{i}.jpg"))
    first = Labeller(CountingModel(max_batch_size=4), LoadSettings(io_threads=4), budget=budget)
    second = Labeller(CountingModel(max_batch_size=4), LoadSettings(io_threads=4), budget=budget)
    with ThreadPoolExecutor(2) as pool:
        runs = list(pool.map(lambda labeller: list(labeller.label(uris, k=1)), (first, second)))
    assert [r["status"] for run in runs for r in run] == ["ok"] * 12
    assert max(held) == 3_000_000 and held[-1] == 0  # one 3 MP picture at a time across both


def test_the_budget_setting(monkeypatch):
    assert LoadSettings.from_env().decode_budget_pixels == DEFAULT_DECODE_BUDGET
    assert DEFAULT_MAX_PIXELS < DEFAULT_DECODE_BUDGET < 2 * DEFAULT_MAX_PIXELS  # one image at the limit, not two
    monkeypatch.setenv("VISIONFLEET_DECODE_BUDGET_PIXELS", "250000000")
    settings = LoadSettings.from_env()
    assert settings.decode_budget_pixels == 250_000_000 and settings.decode_budget().capacity == 250_000_000
    monkeypatch.setenv("VISIONFLEET_DECODE_BUDGET_PIXELS", "lots")
    with pytest.raises(ConfigError, match="VISIONFLEET_DECODE_BUDGET_PIXELS='lots' is not a whole number"):
        LoadSettings.from_env()


def test_a_failing_hook_strands_nothing():
    def broken(in_use: int, waiting: int) -> None:
        raise RuntimeError("metrics are down")

    budget = PixelBudget(100, on_change=broken)
    with budget.hold(100) as taken:
        assert taken == 100
    assert budget.in_use == 0 and budget.waiting == 0

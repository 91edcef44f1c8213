"""The labelling loop: batches bounded and full, bad inputs outside batches, order kept.

``CountingModel`` implements the real model contract (it records the batch
sizes it is given); the real model runs the same loop in test_fleet.py and
test_model.py.
"""
import numpy as np
import pytest

from visionfleet.pipeline.decode import Geometry, decode_image
from visionfleet.pipeline.labeller import Labeller, LoadSettings
from visionfleet.pipeline.labels import imagenet_class_names
from visionfleet.pipeline.model import Model, ModelInfo
from tests.photos import distinct_jpegs


class CountingModel(Model):
    def __init__(self, max_batch_size: int) -> None:
        self.info = ModelInfo("counting", imagenet_class_names(), max_batch_size=max_batch_size)
        self.batches: list[int] = []

    def predict(self, batch: np.ndarray) -> np.ndarray:
        assert batch.dtype == np.uint8 and batch.shape[1:] == (224, 224, 3)
        self.batches.append(len(batch))
        probs = np.zeros((len(batch), 1000), dtype=np.float32)
        probs[:, 7] = 1.0
        return probs


@pytest.fixture
def folder(tmp_path):
    for i, data in enumerate(distinct_jpegs(23)):
        (tmp_path / f"{i:02d}.jpg").write_bytes(data)
    (tmp_path / "bad.jpg").write_bytes(b"not an image at all")
    return tmp_path


def test_batches_are_full_and_never_exceed_the_bound(folder):
    model = CountingModel(max_batch_size=8)
    uris = sorted(str(p) for p in folder.glob("[0-9]*.jpg"))
    records = list(Labeller(model, LoadSettings(io_threads=4)).label(uris, k=3))
    assert model.batches == [8, 8, 7]
    assert [r["uri"] for r in records] == uris
    assert all(r["status"] == "ok" and r["labels"][0]["class_id"] == 7 and len(r["labels"]) == 3 for r in records)


def test_bad_inputs_leave_before_the_batch_and_keep_their_place(folder):
    model = CountingModel(max_batch_size=4)
    good = sorted(str(p) for p in folder.glob("[0-9]*.jpg"))[:6]
    uris = [good[0], str(folder / "bad.jpg"), *good[1:3], str(folder / "missing.jpg"), *good[3:]]
    records = list(Labeller(model, LoadSettings(io_threads=2)).label(uris, k=1))
    assert [r["uri"] for r in records] == uris
    assert [r["status"] for r in records] == ["ok", "error", "ok", "ok", "error", "ok", "ok", "ok"]
    assert "not an image" in records[1]["error"]
    assert "no such file" in records[4]["error"]
    assert model.batches == [4, 2]  # errors never take a batch slot


class PixelModel(Model):
    """Answers the class numbered by each crop's first red value: which crop it was given shows."""

    def __init__(self) -> None:
        self.info = ModelInfo("pixel", imagenet_class_names(), max_batch_size=4)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        probs = np.zeros((len(batch), 1000), dtype=np.float32)
        probs[np.arange(len(batch)), batch[:, 0, 0, 0]] = 1.0
        return probs


def test_crops_handed_over_are_labelled_in_place_of_a_decode_by_the_first_run_only(folder):
    # An int8 job's calibration crops: the first run labels them as they are, a later one decodes again.
    uris = sorted(str(p) for p in folder.glob("[0-9]*.jpg"))[:6]
    decoded = [int(decode_image((folder / uri).read_bytes(), Geometry())[0, 0, 0]) for uri in uris]
    handed = {uris[1]: np.full((224, 224, 3), 42, np.uint8), uris[4]: np.full((224, 224, 3), 43, np.uint8)}
    labeller = Labeller(PixelModel(), LoadSettings(io_threads=2), decoded=handed)
    first = [r["labels"][0]["class_id"] for r in labeller.label(uris[:4], k=1)]
    assert first == [decoded[0], 42, *decoded[2:4]]
    # uris[4]'s crop went unused by the first run: it is dropped, not kept for a later one.
    assert [r["labels"][0]["class_id"] for r in labeller.label(uris, k=1)] == decoded
    assert {42, 43}.isdisjoint(decoded)


def test_only_bad_inputs_need_no_model(folder):
    model = CountingModel(max_batch_size=4)
    records = list(Labeller(model, LoadSettings()).label([str(folder / "bad.jpg")], k=5))
    assert records[0]["status"] == "error" and model.batches == []


def test_model_returning_wrong_shape_is_caught():
    class Broken(CountingModel):
        def predict(self, batch):
            return np.zeros((len(batch) + 1, 1000), dtype=np.float32)

    with pytest.raises(ValueError, match="returned probabilities of shape"):
        Broken(4).checked_predict(np.zeros((2, 224, 224, 3), dtype=np.uint8))
